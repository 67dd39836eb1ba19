"""The chat daemon: follows the agent's peer list, receives on the mesh IP, sends, and
tells the browser UI about every change.

Owns message state transitions (through `chat.store`) and the pointer file the CLI reads.
Connections are `chat.transport`'s, HTTP is `chat.web`'s.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from chat import peers, protocol, transport
from chat.store import Store
from meshcommon.plumbing.events import emit
from meshcommon.plumbing.files import atomic_write

FOLLOW_INTERVAL = 1.0


class Chat:
    def __init__(self, state_dir: Path, store: Store, port: int = transport.PORT):
        self.state_dir = state_dir
        self.store = store
        self.port = port
        self.view: peers.View | None = None
        self.server: asyncio.base_events.Server | None = None
        self.listening_on: str | None = None  # the mesh IP `server` is bound to
        self.listen_failure: tuple[str, str] | None = None  # the last failed bind: address, reason
        self.subscribers: set[asyncio.Queue] = set()
        self.receiver = transport.Receiver(self.is_peer, self.on_message)

    # -- live updates ---------------------------------------------------------

    def publish(self, kind: str, data: dict) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:  # a page that stopped reading: dropped, it reconnects for the state
                self.subscribers.discard(queue)
                emit("chat_subscriber_dropped", reason=f"{queue.qsize()} updates unread")

    def state(self) -> dict:
        if self.view is None:
            return {"mesh_ip": None, "name": None, "peers": [], "agent": "unreachable"}
        return {**self.view.as_dict(), "agent": "connected"}

    async def follow(self) -> None:
        """Poll the agent's status and take each answer (`update`)."""
        with peers.reader(self.state_dir) as agent:
            while True:
                await self.update(await asyncio.to_thread(peers.read, agent))
                await asyncio.sleep(FOLLOW_INTERVAL)

    async def update(self, view: peers.View | None) -> None:
        """Take one poll's view: listen on its mesh IP, tried again on every poll until it works (the
        agent knows its mesh IP before the address is on the interface), and publish a changed view.
        With no agent answering, the chat keeps listening where it was."""
        if view is not None and view.mesh_ip != self.listening_on:
            await self.listen(view.mesh_ip)
        if view != self.view:
            self.view = view
            self.publish("state", self.state())

    async def listen(self, mesh_ip: str | None) -> None:
        if self.server is not None:
            self.server.close()
            self.server, self.listening_on = None, None
        if mesh_ip is None:
            return
        try:
            self.server = await asyncio.start_server(self.receiver.handle, mesh_ip, self.port)
        except OSError as exc:  # the agent has not put the address on the interface yet
            failure = (mesh_ip, str(exc))
            if failure != self.listen_failure:  # once per new reason, not once per poll
                emit("chat_listen_failed", address=f"{mesh_ip}:{self.port}", reason=str(exc))
            self.listen_failure = failure
            return
        self.listening_on, self.listen_failure = mesh_ip, None
        emit("chat_listening", address=f"{mesh_ip}:{self.port}", reason="mesh_ip")

    # -- receiving --------------------------------------------------------------

    def is_peer(self, address: str) -> bool:
        return self.view is not None and address in self.view.peers

    async def on_message(self, peer_ip: str, message: protocol.Message) -> None:
        row, new = await asyncio.to_thread(self.store.incoming, message.id, peer_ip, message.text)
        if new:
            emit("chat_received", peer=peer_ip, message_id=message.id, reason="peer")
            self.publish("message", row)

    # -- sending ----------------------------------------------------------------

    async def send(self, peer_ip: str, text: str) -> dict:
        if self.view is None or peer_ip not in self.view.peers:
            raise LookupError(f"{peer_ip} is not a peer of this node")
        message = protocol.Message(new_message_id(), text, time.time())
        protocol.encode(message)  # size check before anything is stored
        row = await asyncio.to_thread(self.store.outgoing, message.id, peer_ip, text)
        self.publish("message", row)
        return await self._deliver(peer_ip, message)

    async def retry(self, message_id: str) -> dict:
        row = await asyncio.to_thread(self.store.get_outgoing, message_id)
        if row is None:
            raise LookupError(f"no outgoing message {message_id}")
        if row["state"] == "delivered":
            return row
        self.publish("message", await asyncio.to_thread(self.store.mark, message_id, row["peer_ip"], "sending"))
        return await self._deliver(row["peer_ip"], protocol.Message(message_id, row["text"], row["created_at"]))

    async def _deliver(self, peer_ip: str, message: protocol.Message) -> dict:
        peer = self.view.peers.get(peer_ip) if self.view else None
        try:
            if peer is not None and not peer.online:
                raise transport.SendFailed("peer offline")
            await transport.send(peer_ip, message, self.port)
            row = await asyncio.to_thread(self.store.mark, message.id, peer_ip, "delivered")
            emit("chat_delivered", peer=peer_ip, message_id=message.id, reason="acknowledged")
        except transport.SendFailed as exc:
            row = await asyncio.to_thread(self.store.mark, message.id, peer_ip, "failed", exc.reason)
            emit("chat_failed", peer=peer_ip, message_id=message.id, reason=exc.reason)
        self.publish("message", row)
        return row


def new_message_id() -> str:
    return uuid.uuid4().hex


def write_pointer(state_dir: Path, ui_url: str, token: str) -> None:
    """Tell `meshchat send|peers|history` where this node's daemon answers and its API token
    (0600: whoever reads the token can send as this node)."""
    atomic_write(state_dir / "chat.json", json.dumps({"ui": ui_url, "token": token}).encode(), 0o600)
