"""Who may use the browser UI and its API: the checks every request passes before any route.

Owns the defences against other web pages driving the UI. A `Host` that is not this UI's
address (DNS rebinding) is 421; an `Origin` that is not this UI's page is 403; a
state-changing request that is not `application/json` (a cross-site form) is 415, and one
without this daemon's token is 403. The token is made once per daemon start and reaches only
the daemon's own page and the CLI (through the 0600 pointer file). The checks are pure
functions; `Guard` only applies them. Must not know the routes or the chat.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass

import falcon

TOKEN_HEADER = "X-Meshchat-Token"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Access:
    """What a request must show: one of `hosts` as its Host, and `token` to change anything."""

    hosts: frozenset[str]
    token: str


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def new_token() -> str:
    return secrets.token_urlsafe(32)


def authority(host: str, port: int) -> str:
    """`host:port` as a browser writes it in Host and Origin: IPv6 in brackets, lower case."""
    try:
        v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        v6 = False
    return f"[{host}]:{port}".lower() if v6 else f"{host}:{port}".lower()


def access_for(listen_host: str, port: int, token: str) -> Access:
    """The UI answers at the address it listens on and at the loopback names, on its port."""
    return Access(frozenset(authority(host, port) for host in (listen_host, *LOOPBACK)), token)


def host_allowed(host: str | None, access: Access) -> bool:
    return host is not None and host.lower() in access.hosts


def origin_allowed(origin: str, access: Access) -> bool:
    scheme, sep, rest = origin.lower().partition("://")
    return scheme == "http" and bool(sep) and rest in access.hosts


def is_json(content_type: str | None) -> bool:
    # A page on another site can send a form (urlencoded, multipart, text/plain) without asking
    # the browser first; it cannot send application/json that way.
    return content_type is not None and content_type.split(";")[0].strip().lower() == falcon.MEDIA_JSON


def token_matches(given: str | None, token: str) -> bool:
    # Constant time: the answer's timing must not tell how much of a guess was right.
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def refusal(access: Access, method: str, host: str | None, origin: str | None,
            content_type: str | None, token: str | None) -> Refusal | None:
    """Why a request with these headers is refused, or None when it may go on."""
    if not host_allowed(host, access):
        return Refusal(421, f"this UI answers only as {', '.join(sorted(access.hosts))}")
    if origin is not None and not origin_allowed(origin, access):
        return Refusal(403, f"requests from {origin} are not accepted")
    if method in SAFE_METHODS:
        return None
    if not is_json(content_type):
        return Refusal(415, "a request that changes something must be Content-Type: application/json")
    if not token_matches(token, access.token):
        return Refusal(403, f"missing or wrong {TOKEN_HEADER} header")
    return None


class Guard:
    """Falcon middleware: refuse before routing what `refusal` refuses."""

    def __init__(self, access: Access):
        self.access = access

    async def process_request(self, req, resp):
        refused = refusal(self.access, req.method, req.get_header("Host"), req.get_header("Origin"),
                          req.content_type, req.get_header(TOKEN_HEADER))
        if refused is not None:
            raise falcon.HTTPError(refused.status, description=refused.reason)
