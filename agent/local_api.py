"""The agent's local status: served on a unix socket in the state directory, or read from its files.

Owns the serving of `meshcommon.contract.wire.AgentStatus` (clients:
`meshcommon.plumbing.local_api_client`) over HTTP/1.1 on a unix socket that is local-only by
construction (0600 in a 0700 directory, no TCP port), the same status as Prometheus text
(`agent.core.metrics`) on the TCP address of `--metrics-listen`, and the status `meshagent status`
shows when no agent answers, from the same status view over the state directory. The server is a
minimal asyncio responder, not a web framework: one request per connection, `GET /status` (`GET
/metrics` on the metrics address) or an error, the head bounded in size and time, then close. The
running agent answers from its memory and WireGuard's counters, so it keeps working while the
control plane is down. Must not decide what the status says (`status_view` does, and `metrics`
its Prometheus text).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from agent import wg
from agent.core import intake, status_view
from agent.core.settings import DEFAULT_INTERFACE
from agent.statedir import StateDir
from meshcommon.contract.wire import AgentStatus
from meshcommon.plumbing.files import private_dir

MAX_HEAD = 8192  # bytes of request line and headers
HEAD_TIMEOUT = 5.0  # seconds for a client to send them
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class StatusSource(Protocol):
    def status(self) -> AgentStatus: ...


def route(head: bytes, path: bytes = b"/status") -> int:
    """The answer's status code for a request head: 200 for `GET path`, else what is wrong."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return 400
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if target != path:
        return 404
    return 200 if method == b"GET" else 405


def as_json(status: AgentStatus) -> tuple[bytes, str]:
    return msgspec.json.encode(status), "application/json"


def as_metrics(status: AgentStatus) -> tuple[bytes, str]:
    from agent.core import metrics  # loads prometheus_client: only once metrics are asked for
    return metrics.render(status).encode(), metrics.CONTENT_TYPE


def response(code: int, body: bytes = b"", content_type: str = "application/json") -> bytes:
    head = (f"HTTP/1.1 {code} {REASONS[code]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


Encoder = Callable[[AgentStatus], tuple[bytes, str]]


async def answer(agent: StatusSource, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 path: bytes = b"/status", encode: Encoder = as_json) -> None:
    """Answer one request on a connection (`GET path`: the status, encoded), then close it."""
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            head = b""
        code = route(head, path)
        if code == 200:
            # Asks WireGuard (blocking), and the text takes a while for many peers: off the loop.
            body, content_type = await asyncio.to_thread(lambda: encode(agent.status()))
            writer.write(response(200, body, content_type))
        else:
            writer.write(response(code, f"{REASONS[code]}\n".encode(), "text/plain"))
        await writer.drain()
    except ConnectionError:
        pass  # the client went away: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


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
    try:
        server = await asyncio.start_unix_server(lambda r, w: answer(agent, r, w), sock=sock, limit=MAX_HEAD)
        async with server:
            await server.serve_forever()
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


async def serve_metrics(agent: StatusSource, host: str, port: int) -> asyncio.Server:
    """Start answering `GET /metrics` on host:port (OSError if the address cannot be bound)."""
    return await asyncio.start_server(lambda r, w: answer(agent, r, w, b"/metrics", as_metrics), host, port,
                                      limit=MAX_HEAD)
