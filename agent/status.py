"""The agent's local status: served on a unix socket in the state directory, or read from its files.

Owns the serving of `meshcommon.wire.AgentStatus` (clients: `meshcommon.agent_api`) over HTTP on
a unix socket that is local-only by construction (0600 in a 0700 directory, no TCP port; the socket
is bound here, not by uvicorn, which would make it 0666), and the status `meshagent status` shows
when no agent answers, from the same status view over the state directory. The running agent
answers from its memory and `wg show`, so it keeps working while the control plane is down. Must
not decide what the status says (`status_view` does).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Protocol

import falcon
import falcon.asgi
import msgspec
import uvicorn

from agent import intake, status_view, wg
from agent.settings import DEFAULT_INTERFACE
from agent.state import StateDir
from meshcommon.files import private_dir
from meshcommon.wire import AgentStatus


class StatusSource(Protocol):
    def status(self) -> AgentStatus: ...


class Status:
    def __init__(self, agent: StatusSource):
        self.agent = agent

    async def on_get(self, req, resp):
        status = await asyncio.to_thread(self.agent.status)  # runs `wg show`: off the loop
        resp.content_type = falcon.MEDIA_JSON
        resp.data = msgspec.json.encode(status)


def create_status_app(agent: StatusSource) -> falcon.asgi.App:
    app = falcon.asgi.App()
    app.add_route("/status", Status(agent))
    return app


def offline_status(state_dir: Path) -> AgentStatus:
    """What the state directory (and WireGuard, if the interface is still up) says when no agent runs."""
    state = StateDir(state_dir)
    identity = state.identity()
    cached = state.netmap()
    try:
        netmap = intake.netmap_of(intake.from_cache(cached)) if cached is not None else None
    except intake.BadNetmap:
        netmap = None
    interface = state.interface() or DEFAULT_INTERFACE
    name = identity.name if identity else netmap.me.name if netmap else ""
    return status_view.agent_status(name=name, interface=interface, identity=identity, netmap=netmap,
                                    stats=wg.peer_stats(interface), now=time.time(), control=None,
                                    public_key=netmap.me.public_key if netmap else None)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # the agent owns signals


def bind_private(socket_path: str) -> socket.socket:
    """A unix socket at `socket_path` that only this user can connect to.

    It is made 0600 before it listens, so no one ever connects while it is looser.
    """
    private_dir(Path(socket_path).parent)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(socket_path)
        os.chmod(socket_path, 0o600)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(agent: StatusSource, socket_path: str) -> None:
    """Serve until cancelled."""
    sock = bind_private(socket_path)
    config = uvicorn.Config(create_status_app(agent), log_level="warning", lifespan="off", access_log=False)
    try:
        await _Server(config).serve(sockets=[sock])
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
