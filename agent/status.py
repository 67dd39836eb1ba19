"""The agent's local status endpoint: HTTP on a unix socket in the state directory.

Serves `meshcommon.wire.AgentStatus` (clients: `meshcommon.agent_api`). Local-only by construction (a 0600 socket in a 0700 directory, no TCP port; the
socket is bound here, not by uvicorn, which would make it 0666). `meshagent status` and
the chat demo read it; it answers from the agent's memory and `wg show`, so it
keeps working while the control plane is down.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import falcon
import falcon.asgi
import msgspec
import uvicorn

from meshcommon.files import private_dir
from meshcommon.wire import AgentStatus


class Status:
    def __init__(self, agent):
        self.agent = agent

    async def on_get(self, req, resp):
        status = await asyncio.to_thread(self.agent.status)  # runs `wg show`: off the loop
        resp.content_type = falcon.MEDIA_JSON
        resp.data = msgspec.json.encode(msgspec.convert(status, AgentStatus))  # the contract, checked


def create_status_app(agent) -> falcon.asgi.App:
    app = falcon.asgi.App()
    app.add_route("/status", Status(agent))
    return app


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


async def serve(agent, socket_path: str) -> None:
    """Serve until cancelled."""
    sock = bind_private(socket_path)
    config = uvicorn.Config(create_status_app(agent), log_level="warning", lifespan="off", access_log=False)
    try:
        await _Server(config).serve(sockets=[sock])
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
