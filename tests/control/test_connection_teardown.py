"""A connection the client resets is let go at once, whichever parser read it.

uvicorn arms a keep-alive timer after every response and cancels it in `connection_lost` only
when the connection closed cleanly; a reset (ECONNRESET: HAProxy closes idle server connections
that way) left the timer holding the protocol, its transport and its last request for
`keepalive_timeout` (75 s). Behind a TLS proxy at 10,000 nodes that was every heartbeat: the
worker grew ~8 MB a second (bench/control_scale.py --tls-proxy). Real uvicorn protocols, a real
event loop and app; only the socket is a stand-in (a transport that records what is written).
"""
import asyncio
import gc
import weakref

import pytest
import uvicorn
from uvicorn.server import ServerState

from control import config
from control.serve import connections as httpserver


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.written = b""
        self.closing = False

    def get_extra_info(self, name, default=None):
        return {"peername": ("192.0.2.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data):
        self.written += data

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    def abort(self):
        self.closing = True

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def set_protocol(self, protocol):
        pass


async def served_then(lost: Exception | None, http_parser: str) -> weakref.ref:
    """A protocol that answered one kept-alive request, then lost its connection with `lost`; a
    weak reference to it, once nothing but the loop could hold it."""
    uv_config = uvicorn.Config(app, timeout_keep_alive=3600, lifespan="off", log_config=None)
    uv_config.load()
    protocol = httpserver.protocol_class(http_parser)(
        config=uv_config, server_state=ServerState(), app_state={}, header_timeout=10.0, write_timeout=10.0,
        per_address=10)
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n")
    for _ in range(100):
        if transport.written.endswith(b"ok"):
            break
        await asyncio.sleep(0.01)
    assert transport.written.startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.01)  # the response completes: the keep-alive timer is armed
    assert protocol.timeout_keep_alive_task is not None
    protocol.connection_lost(lost)
    held = weakref.ref(protocol)
    del protocol
    await asyncio.sleep(0)
    gc.collect()
    return held


@pytest.mark.parametrize("http_parser", config.HTTP_PARSERS[1:])
@pytest.mark.parametrize("lost", [None, ConnectionResetError(104, "Connection reset by peer")],
                         ids=["closed", "reset"])
def test_a_lost_connection_is_released_at_once_not_after_the_keepalive_timeout(http_parser, lost):
    if http_parser == "httptools":
        pytest.importorskip("httptools")  # optional: the C parser, when installed
    held = asyncio.run(asyncio.wait_for(served_then(lost, http_parser), 10))
    assert held() is None
