"""Secrets: join tokens, node tokens and the admin token.

Tokens carry a kind prefix so an operator can tell them apart in a file or a
log. Only their SHA-256 is stored; comparison of the admin token is constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

JOIN, NODE, ADMIN = "mvj_", "mvn_", "mva_"


def new_token(kind: str) -> str:
    return kind + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def ensure_admin_token(path: Path) -> str:
    """Read the admin token, creating it (mode 0600, never world-readable) on first start."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = new_token(ADMIN)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    try:
        os.link(temp, path)  # atomic and exclusive: a complete file or none
    except FileExistsError:  # another process won the race: use its token
        token = path.read_text().strip()
    finally:
        temp.unlink()
    return token
