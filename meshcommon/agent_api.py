"""The agent's local API as its clients see it: where the socket is and how to read the status.

Owns the client side of `GET /status` on the agent's unix socket (`STATE_DIR/agent.sock`,
0600), for `meshagent status` and the chat daemon, decoded into `wire.AgentStatus`.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import msgspec

from meshcommon.wire import AgentStatus

SOCKET_NAME = "agent.sock"


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


def fetch_status(socket: Path | str, timeout: float = 5.0) -> AgentStatus:
    """A running agent's status; raises httpx.HTTPError or OSError when none answers, ValueError
    when what answers does not speak the contract."""
    transport = httpx.HTTPTransport(uds=str(socket))
    with httpx.Client(transport=transport, timeout=timeout) as client:
        response = client.get("http://agent/status")
        response.raise_for_status()
    try:
        return msgspec.json.decode(response.content, type=AgentStatus)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ValueError(f"agent status does not fit the contract: {exc}") from None
