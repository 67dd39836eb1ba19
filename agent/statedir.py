"""The agent's state directory: identity, node credentials, the last good netmap and the interface.

Owns durable files. Every write is atomic (temp file, fsync, rename, fsync of the directory), so a
crash leaves the old file or the new one, never half of one. The private key is created 0600 and
never leaves this directory, which is kept 0700. An unreadable file reads as absent and is
rewritten on the next success. Must not interpret the netmap (`intake` owns its format).
"""
from __future__ import annotations

from pathlib import Path

import msgspec

from agent.core.model import Identity
from meshcommon.contract import keys
from meshcommon.plumbing import local_api_client as agent_api
from meshcommon.plumbing.files import atomic_write, private_dir


class StateDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.key_path = self.root / "private.key"
        self.node_path = self.root / "node.json"
        self.netmap_path = self.root / "netmap.json"
        self.conf_path = self.root / "wg.conf"
        self.interface_path = self.root / "interface"
        self.socket_path = agent_api.socket_path(self.root)
        self.wg_log = self.root / "wireguard-go.log"

    def private_key(self) -> str:
        """This node's private key, generated on first use; the agent reads it at start."""
        private_dir(self.root)  # also tightens a state dir made before it was kept 0700
        if self.key_path.exists():
            return self.key_path.read_text().strip()
        key = keys.new_private_key()
        atomic_write(self.key_path, (key + "\n").encode(), 0o600)
        return key

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError:
            return None

    def identity(self) -> Identity | None:
        data = self._read(self.node_path)
        if data is None:
            return None
        try:
            return msgspec.json.decode(data, type=Identity)
        except msgspec.DecodeError:
            return None

    def save_identity(self, identity: Identity) -> None:
        atomic_write(self.node_path, msgspec.json.format(msgspec.json.encode(identity), indent=2))

    def forget_identity(self) -> None:
        self.node_path.unlink(missing_ok=True)
        self.netmap_path.unlink(missing_ok=True)

    def netmap(self) -> bytes | None:
        return self._read(self.netmap_path)

    def save_netmap(self, data: bytes) -> None:
        atomic_write(self.netmap_path, data)

    def save_conf(self, conf: str) -> bool:
        """Write the WireGuard config if it differs from the file's; True if it was written."""
        if self._read(self.conf_path) == conf.encode():
            return False
        atomic_write(self.conf_path, conf.encode(), 0o600)
        return True

    def interface(self) -> str | None:
        """The interface the agent was last started with (what `meshagent down` removes)."""
        data = self._read(self.interface_path)
        if data is None:
            return None
        return data.decode(errors="replace").strip() or None

    def save_interface(self, interface: str) -> None:
        if self.interface() != interface:
            atomic_write(self.interface_path, (interface + "\n").encode())
