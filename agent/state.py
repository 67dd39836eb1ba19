"""The agent's state directory: identity, node credentials and the last good netmap.

Owns durable files. Every write is atomic (temp file, fsync, rename, fsync of
the directory), so a crash leaves the old file or the new one, never half of
one. The private key is created 0600 and never leaves this directory, which
is kept 0700.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from agent import wg


def private_dir(path: Path) -> None:
    """Create `path` 0700, or tighten it to 0700: it holds the private key and the node token."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    private_dir(path.parent)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.key_path = self.root / "private.key"
        self.node_path = self.root / "node.json"
        self.netmap_path = self.root / "netmap.json"
        self.conf_path = self.root / "wg.conf"
        self.socket_path = self.root / "agent.sock"
        self.wg_log = self.root / "wireguard-go.log"

    def private_key(self) -> str:
        """This node's private key, generated on first use; the agent reads it at start."""
        private_dir(self.root)  # also tightens a state dir made before it was kept 0700
        if self.key_path.exists():
            return self.key_path.read_text().strip()
        key = wg.genkey()
        atomic_write(self.key_path, (key + "\n").encode(), 0o600)
        return key

    def load_json(self, path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable: treated as absent, rewritten on the next success
        return data if isinstance(data, dict) else None

    def node(self) -> dict | None:
        return self.load_json(self.node_path)

    def save_node(self, node: dict) -> None:
        atomic_write(self.node_path, json.dumps(node, indent=2).encode())

    def forget_node(self) -> None:
        self.node_path.unlink(missing_ok=True)
        self.netmap_path.unlink(missing_ok=True)

    def netmap(self) -> dict | None:
        return self.load_json(self.netmap_path)

    def save_netmap(self, header: dict, entries: dict[str, dict]) -> None:
        atomic_write(self.netmap_path, json.dumps({"header": header, "entries": entries}).encode())
