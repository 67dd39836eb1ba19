"""HTTP connections of the control plane: how long a client may take and how many may be open.

Owns the uvicorn protocols and the gunicorn worker that bound slow and hostile clients, per worker
and whichever parser reads the requests (h11, pure Python, or httptools, in C and about twice as
cheap per request: `http_parser`, by default httptools when it is installed):
- header timeout: a request's line and headers must be complete within `header_timeout` of the
  connection's start, or of the first byte of the next request on a kept-alive connection; else
  the connection is answered 408 (if part of a request came) and closed;
- connection cap: at `max_connections` open connections requests are answered 503 (uvicorn's
  `limit_concurrency`) and further connections are closed as soon as they are accepted; a client
  (an IPv6 one by its /64) holds at most `max_connections_per_address` of them, so one cannot take
  all (a trusted proxy is exempt: every node behind it shares its address, the proxy bounds them);
- write timeout: a connection whose client stopped reading (writes paused for `write_timeout`)
  is aborted, so a slow reader holds neither a connection nor its buffered responses for long;
- a response sent before its request body was read closes the connection;
- idle keep-alive: uvicorn's own timer, set to `keepalive_timeout`, cancelled however the
  connection ends (uvicorn leaves it armed after a reset, holding the connection's objects);
- the descriptor limit is raised to fit the cap, so accept() does not fail with EMFILE;
- garbage collection is tuned for a process holding thousands of connections (`tune_gc`).
Body timeouts belong to the body reader (control/api/resources.py). Knows nothing of routes or the store.
"""
from __future__ import annotations

import asyncio
import functools
import gc
import resource
from collections import Counter
from typing import TYPE_CHECKING, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn_worker import UvicornWorker

from control.rules import reflexive
from meshcommon.contract.addresses import Network
from meshcommon.plumbing.events import emit

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
FD_RESERVE = 256  # descriptors besides client connections: listeners, store connections, logs, metrics files
# Allocations (net of frees) between collections of the youngest generation (CPython's default: 700).
YOUNG_COLLECTION_EVERY = 20_000


if TYPE_CHECKING:  # for the type checker a bounded protocol is a uvicorn protocol
    _Protocol = H11Protocol
else:  # at run time `Bounds` is mixed in before the protocol class it bounds
    _Protocol = object


class Bounds(_Protocol):
    """What every connection of a worker is held to, whatever parses its requests: a header timeout,
    a write timeout and hard connection caps (`limit_concurrency` in all, `per_address` from one
    client address, but for `exempt` ones: trusted proxies). Mixed into a uvicorn protocol, which
    tells through `_partial_request()` and `_body_pending()` where its parser is."""

    per_address_open: ClassVar[Counter[str]] = Counter()  # this worker's open connections by client address

    def __init__(self, *args, header_timeout: float, write_timeout: float, per_address: int,
                 exempt: tuple[Network, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.per_address = per_address
        self.exempt = exempt
        self.header_timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.address: str | None = None

    def _partial_request(self) -> bool:
        """Part of a request came (its line or some headers), not yet all of its headers."""
        raise NotImplementedError

    def _body_pending(self) -> bool:
        """The request's headers came, not yet all of its body."""
        raise NotImplementedError

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            self.logger.warning("Closed a connection over the limit of %d.", self.limit_concurrency)
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        # Counted by address (an IPv6 host by its /64), or not at all for a trusted proxy.
        self.address = None if reflexive.among(address, self.exempt) else reflexive.counted_as(address)
        if self.address is not None:
            self.per_address_open[self.address] += 1
            if self.per_address_open[self.address] > self.per_address:
                self.logger.warning("Closed a connection over the limit of %d per address.", self.per_address)
                transport.close()
                return
        self._arm_header_timer()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.write_timeout, self._reader_gone)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _reader_gone(self) -> None:
        self.write_timer = None
        self.logger.warning("Aborted a connection whose client stopped reading for %g s.", self.write_timeout)
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._partial_request() and not self.transport.is_closing():
            self._arm_header_timer()  # a request has begun; its headers are not complete yet
        else:
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._body_pending():  # answered (a 408, a 401) before its body came: never reuse
            self.transport.close()
        elif self._partial_request():  # a pipelined request has begun
            self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        if self.address is not None:
            self.per_address_open[self.address] -= 1
            if self.per_address_open[self.address] <= 0:
                del self.per_address_open[self.address]
            self.address = None
        super().connection_lost(exc)
        # uvicorn cancels its keep-alive timer only when the connection closed cleanly: after a
        # reset (HAProxy closes idle server connections so) the timer held this protocol, its
        # transport and its last request for `keepalive_timeout`; behind a proxy, every request.
        self._unset_keepalive_if_required()

    def _arm_header_timer(self) -> None:
        if self.header_timer is None:  # trickled bytes do not extend the deadline
            self.header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        if self._partial_request():  # tell the client why it is dropped
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


class BoundedH11Protocol(Bounds, H11Protocol):
    """uvicorn's h11 protocol, bounded."""

    def _partial_request(self) -> bool:
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _body_pending(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY


@functools.cache
def bounded_httptools() -> type[Bounds]:
    """uvicorn's httptools protocol, bounded (ImportError when httptools is not installed)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(Bounds, HttpToolsProtocol):  # type: ignore[misc]  # Bounds is typed as h11
        """Its parser's callbacks say where a request is."""

        in_headers = False  # from a request's first byte to the end of its headers
        in_body = False  # from the end of its headers to the end of its body

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_headers = True

        def on_headers_complete(self) -> None:
            self.in_headers, self.in_body = False, True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.in_body = False
            super().on_message_complete()

        def _partial_request(self) -> bool:
            return self.in_headers

        def _body_pending(self) -> bool:
            return self.in_body

    return BoundedHttpToolsProtocol


def protocol_class(http_parser: str) -> type[Bounds]:
    """The bounded protocol of `http_parser`: "h11", "httptools", or "auto" (httptools when installed)."""
    if http_parser != "h11":
        try:
            return bounded_httptools()
        except ImportError:
            if http_parser == "httptools":
                raise ValueError("http_parser is httptools, which is not installed") from None
    return BoundedH11Protocol


def event_loop_for(event_loop: str, tls: bool) -> str:
    """uvicorn's `loop` for the `event_loop` setting: "auto" is uvloop (when installed) without TLS
    and asyncio with it. uvloop's TLS transport keeps memory of connections closed mid-stream
    (MagicStack/uvloop#565): with uvloop a worker reached 726 MB, still growing, after 16,000 TLS
    netmap streams opened and dropped (agents reconnecting through a loaded network), where
    asyncio's levelled off at 252 MB (bench/stream_churn.py), and a 50-node lab's reached 593 MB
    in 45 minutes. An explicit choice is kept."""
    if event_loop == "auto" and tls:
        return "asyncio"
    return event_loop


class ControlWorker(UvicornWorker):
    """The gunicorn worker of `meshctl serve`: uvicorn with the limits of the app's `Config`.

    gunicorn passes the application (`control.serve.process.ControlServer`) to each worker; its
    `config` holds the settings.
    """

    def __init__(self, age, ppid, sockets, app, timeout, cfg, log):
        settings = app.config
        self.CONFIG_KWARGS = {
            **UvicornWorker.CONFIG_KWARGS,
            "http": functools.partial(protocol_class(settings.http_parser), header_timeout=settings.header_timeout,
                                      write_timeout=settings.write_timeout,
                                      per_address=settings.max_connections_per_address,
                                      exempt=reflexive.parse_networks(settings.trusted_proxies)),
            "loop": event_loop_for(settings.event_loop, settings.tls_cert is not None),
            "limit_concurrency": settings.max_connections,
            # Never let uvicorn take a client address from headers: `trusted_proxies` decides that.
            "proxy_headers": False,
            "timeout_keep_alive": settings.keepalive_timeout,
        }
        super().__init__(age, ppid, sockets, app, timeout, cfg, log)

    def init_process(self) -> None:
        fit_fd_limit(self.app.config.max_connections + FD_RESERVE)
        tune_gc()
        bound_tls_buffers()
        super().init_process()


TLS_READ_BUFFER = 16 * 1024  # one TLS record's plaintext at most (RFC 8446 5.1)


def bound_tls_buffers() -> None:
    """asyncio gives every TLS connection a zero-filled 256 KiB read buffer (`SSLProtocol.max_size`,
    a class attribute), touched at once: 5.9 GB of RSS for the 20,000 connections of 10,000 agents
    (bench/control_scale.py --tls). A record holds at most 16 KiB of plaintext and requests are
    small, so reading one record at a time costs nothing; uvloop has its own transport."""
    import asyncio.sslproto
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def tune_gc() -> None:
    """Keep full garbage collections of a worker rare, and out of what was there at its start.

    A full collection stops the event loop until it has visited every tracked object: at 10,000
    nodes a worker holds a quarter of a million (its connections, streams and membership cache),
    and one took 0.1-0.5 s, freeing nothing, while no heartbeat was answered. CPython considers a
    full collection every 100 young ones and starts it once what was promoted since the last
    reaches a quarter of the old objects. With a young collection every 700 allocations that was
    every few seconds while the heap grew (nodes enrolling, streams opening), and whatever was
    alive at a young collection (a heartbeat waiting for its batch, a response being written) was
    promoted towards the next. Every YOUNG_COLLECTION_EVERY allocations, full collections come
    ~30 times less often, for young ones of a few milliseconds. What the worker inherited from the
    master (modules, classes, the app) lives as long as the process: frozen, never visited again.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)


def soft_fd_limit(soft: int, hard: int, needed: int) -> int:
    """The soft descriptor limit to set: `needed` if the hard limit allows, never lower than now."""
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    return needed if hard == resource.RLIM_INFINITY else max(soft, min(needed, hard))


def fit_fd_limit(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE towards `needed`; say so if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fitted = soft_fd_limit(soft, hard, needed)
    if fitted != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fitted, hard))
    if fitted != resource.RLIM_INFINITY and fitted < needed:
        emit("fd_limit_low", limit=fitted, needed=needed, reason="max_connections")
