"""The agent's state directory: identity, node credentials and the last good netmap.

Owns durable files. Every write is atomic (temp file, fsync, rename, fsync of
the directory), so a crash leaves the old file or the new one, never half of
one. The private key is created 0600 and never leaves this directory, which
is kept 0700.
"""
from __future__ import annotations

import json
from pathlib import Path

from agent import wg
from meshcommon import agent_api
from meshcommon.files import atomic_write, private_dir


class StateDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.key_path = self.root / "private.key"
        self.node_path = self.root / "node.json"
        self.netmap_path = self.root / "netmap.json"
        self.conf_path = self.root / "wg.conf"
        self.socket_path = agent_api.socket_path(self.root)
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
