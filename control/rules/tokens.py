"""Secrets: join tokens, node tokens and the admin token.

Owns making, hashing and comparing tokens, and the admin token file. Tokens carry a kind
prefix so an operator can tell them apart in a file or a log. Only their SHA-256 is stored;
comparison of the admin token is constant time. The admin token file is only ever used when
this user alone can read it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

JOIN, NODE, ADMIN = "mvj_", "mvn_", "mva_"


class UnsafeSecretFile(Exception):
    """A secret file others could read or replace: refuse to use it rather than trust it."""


def new_token(kind: str) -> str:
    return kind + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def unsafe_because(st: os.stat_result, uid: int) -> str | None:
    """Why a secret file with this stat must not be trusted by user `uid`, or None (pure)."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by this user (uid {uid}); chown it"
    if mode & 0o077:
        return f"it has mode {mode:04o}, so group or others can access it; chmod 600 it"
    return None


def read_private(path: Path) -> str:
    """The content of a secret file, refused (UnsafeSecretFile) unless only this user can access it."""
    with open(path) as handle:
        reason = unsafe_because(os.fstat(handle.fileno()), os.geteuid())
        if reason:
            raise UnsafeSecretFile(f"refusing to use {path}: {reason}")
        return handle.read().strip()


def ensure_admin_token(path: Path) -> str:
    """Read the admin token, creating it (mode 0600, never world-readable) on first start."""
    try:
        return read_private(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = new_token(ADMIN)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    try:
        os.link(temp, path)  # atomic and exclusive: a complete file or none
    except FileExistsError:  # another process won the race: use its token
        token = read_private(path)
    finally:
        temp.unlink()
    return token
