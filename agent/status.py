"""The agent's local status endpoint: HTTP on a unix socket in the state directory.

Local-only by construction (a 0600 socket, no TCP port). `meshagent status` and
the chat demo read it; it answers from the agent's memory and `wg show`, so it
keeps working while the control plane is down.
"""
from __future__ import annotations

import asyncio
import os

import falcon.asgi
import httpx
import uvicorn


class Status:
    def __init__(self, agent):
        self.agent = agent

    async def on_get(self, req, resp):
        resp.media = await asyncio.to_thread(self.agent.status)  # runs `wg show`: off the loop


def create_status_app(agent) -> falcon.asgi.App:
    app = falcon.asgi.App()
    app.add_route("/status", Status(agent))
    return app


async def serve(agent, socket_path: str) -> None:
    """Serve until cancelled."""
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    config = uvicorn.Config(create_status_app(agent), uds=socket_path, log_level="warning", lifespan="off",
                            access_log=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the agent owns signals
    try:
        await server.serve()
    finally:
        if os.path.exists(socket_path):
            os.unlink(socket_path)


def fetch(socket_path: str, timeout: float = 5.0) -> dict:
    """Read a running agent's status; raises httpx.HTTPError (or OSError) when none answers."""
    transport = httpx.HTTPTransport(uds=socket_path)
    with httpx.Client(transport=transport, timeout=timeout) as client:
        response = client.get("http://agent/status")
        response.raise_for_status()
        return response.json()
