"""No secret or runtime state is ever tracked by git.

Owns the list of what must never be committed: state directories, tokens, keys,
databases and WireGuard private keys inside any file. tests/fixtures/ may hold
deliberate test material.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXEMPT = ("tests/fixtures/",)
STATE_DIRS = re.compile(r"^(state|\.lab[^/]*)/")
SECRET_SUFFIXES = (".token", ".key", ".pem", ".db", ".db-wal", ".db-shm")
SECRET_NAMES = {"admin.token", "private.key"}
WG_PRIVATE_KEY = re.compile(rb"^\s*PrivateKey\s*=\s*[A-Za-z0-9+/]{43}=\s*$", re.MULTILINE)


def secret_reason(path: str, content: bytes | None) -> str | None:
    """Why `path` (relative, with `content` when readable) must not be tracked, or None (pure)."""
    if path.startswith(EXEMPT):
        return None
    name = path.rsplit("/", 1)[-1]
    if STATE_DIRS.match(path):
        return "runtime state directory"
    if name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES):
        return "secret or database file name"
    if content is not None and WG_PRIVATE_KEY.search(content):
        return "contains a WireGuard private key"
    return None


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip(f"{ROOT} is not a git checkout: {top.stderr.strip()}")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [os.fsdecode(p) for p in listed.stdout.split(b"\0") if p]


def read(path: str) -> bytes | None:
    try:
        return (ROOT / path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None  # deleted in the work tree, or a submodule


def test_no_tracked_file_is_a_secret_or_state():
    offenders = {}
    for path in tracked_files():
        reason = secret_reason(path, read(path))
        if reason:
            offenders[path] = reason
    assert not offenders, f"tracked files that must not be committed (git rm --cached them): {offenders}"


KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="


@pytest.mark.parametrize("path, content", [
    ("state/control.log", b""),
    (".lab/hosts/a/etc", b""),
    (".lab-molecule/x.yml", b""),
    ("roles/x/files/admin.token", b""),
    ("agent/private.key", b""),
    ("deploy/server.pem", b""),
    ("control.db-wal", b""),
    ("docs/wg0.conf", b"[Interface]\nPrivateKey = " + KEY.encode() + b"\nListenPort = 51820\n"),
])
def test_detector_flags_secrets_and_state(path, content):
    assert secret_reason(path, content)


@pytest.mark.parametrize("path, content", [
    ("tests/fixtures/wg0.conf", b"PrivateKey = " + KEY.encode() + b"\n"),
    ("tests/fixtures/admin.token", b"mva_x"),
    ("agent/statedir.py", b'self.key_path = self.root / "private.key"\n'),
    ("docs/wg.md", b"PrivateKey = <this node's key>\n"),
    ("agent/templates/wg.conf.j2", b"PrivateKey = {{ private_key }}\n"),
    ("control/rules/tokens.py", None),
])
def test_detector_leaves_ordinary_files_alone(path, content):
    assert secret_reason(path, content) is None
