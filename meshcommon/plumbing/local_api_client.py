"""The agent's local API as its clients see it: where the socket is and how to read the status.

Owns the client side of `GET /status` on the agent's unix socket (`STATE_DIR/agent.sock`,
0600), for `meshagent status` and the chat daemon, decoded into `wire.AgentStatus`.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import msgspec

from meshcommon.contract.wire import AgentStatus

SOCKET_NAME = "agent.sock"


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


class StatusClient:
    """Reads a running agent's status again and again (the chat daemon polls it every second).

    Its transport is made once: building one loads the system's CA bundle into an SSL context
    (about 34 ms of CPU here, unused on a unix socket), which made a daemon polling through a new
    client each second cost 3-5 % of a core while idle. The agent closes each connection, so each
    read connects anew (cheap on a unix socket)."""

    def __init__(self, socket: Path | str, timeout: float = 5.0):
        self._client = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), timeout=timeout)

    def fetch(self) -> AgentStatus:
        """The agent's status; raises httpx.HTTPError or OSError when none answers, ValueError
        when what answers does not speak the contract."""
        response = self._client.get("http://agent/status")
        response.raise_for_status()
        try:
            return msgspec.json.decode(response.content, type=AgentStatus)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise ValueError(f"agent status does not fit the contract: {exc}") from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> StatusClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def fetch_status(socket: Path | str, timeout: float = 5.0) -> AgentStatus:
    """A running agent's status, once (see StatusClient.fetch for what it raises)."""
    with StatusClient(socket, timeout) as client:
        return client.fetch()
