"""Slow and hostile clients: header, body and keep-alive timeouts on a real gunicorn, and log rate limits."""
import io
import logging
import resource
import selectors
import socket
import threading
import time

import httpx
import pytest

from control import config
from control.serve import connections as httpserver
from control.serve.connections import soft_fd_limit
from meshcommon.plumbing.events import NOISY_LOGGERS, RepeatFilter, setup_logging
from testbed import enrol
from testbed.control_process import ControlProcess

HEADER_TIMEOUT, BODY_TIMEOUT, KEEPALIVE_TIMEOUT = 1.0, 1.0, 2.0
SLACK = 1.5
HALF_HEADERS = b"POST /v1/register HTTP/1.1\r\nHost: control\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module", params=config.HTTP_PARSERS[1:])
def http_parser(request):
    """Every bound holds whichever parser reads the requests."""
    if request.param == "httptools":
        pytest.importorskip("httptools")
    return request.param


@pytest.fixture(scope="module")
def control(tmp_path_factory, http_parser):
    proc = ControlProcess(tmp_path_factory.mktemp("slow"), heartbeat_interval=0.5, offline_after=1.5,
                          settings={"header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT,
                                    "keepalive_timeout": KEEPALIVE_TIMEOUT, "http_parser": http_parser})
    yield proc.start()
    proc.stop()


def connect(control: ControlProcess, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", control.port), timeout=5)
    if first:
        sock.sendall(first)
    return sock


def response(sock: socket.socket) -> bytes:
    """One whole response (with a Content-Length) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or pytest.fail(f"closed after {data!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536) or pytest.fail(f"closed after {data!r}")
    return head + b"\r\n\r\n" + body


def until_closed(sock: socket.socket, within: float) -> tuple[bytes, float | None]:
    """Everything the server sends until it closes `sock`, and after how long (None: still open after `within`)."""
    started, received = time.monotonic(), b""
    with sock:
        while (left := started + within - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return received, time.monotonic() - started
            if not chunk:
                return received, time.monotonic() - started
            received += chunk
    return received, None


@pytest.mark.slow
@pytest.mark.parametrize("sent", [b"", b"GET /heal", HALF_HEADERS], ids=["nothing", "half-line", "half-headers"])
def test_a_connection_without_complete_headers_is_closed_after_the_header_timeout(control, sent):
    received, closed_after = until_closed(connect(control, sent), HEADER_TIMEOUT + SLACK)
    assert closed_after is not None and closed_after > HEADER_TIMEOUT * 0.8
    assert received == b"" if not sent else received.startswith(b"HTTP/1.1 408 ")


@pytest.mark.slow
def test_trickled_header_bytes_do_not_extend_the_header_timeout(control):
    sock, started = connect(control), time.monotonic()
    for byte in HALF_HEADERS[:12]:  # one byte every 0.2 s: 2.4 s if the server let it
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        time.sleep(0.2)
    received, _ = until_closed(sock, HEADER_TIMEOUT + SLACK)
    assert received.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < HEADER_TIMEOUT + SLACK


@pytest.mark.slow
def test_the_next_request_on_a_kept_alive_connection_has_the_header_timeout_too(control):
    sock = connect(control, b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n")
    assert response(sock).startswith(b"HTTP/1.1 200 ")
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    received, closed_after = until_closed(sock, HEADER_TIMEOUT + SLACK)
    assert received.startswith(b"HTTP/1.1 408 ") and closed_after > HEADER_TIMEOUT * 0.8


@pytest.mark.slow
def test_a_pipelined_request_has_the_header_timeout_from_the_end_of_the_response_before(control):
    sock = connect(control, b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\nGET /healthz HTTP/1.1\r\n")
    assert response(sock).startswith(b"HTTP/1.1 200 ")
    received, closed_after = until_closed(sock, HEADER_TIMEOUT + SLACK)
    assert received.startswith(b"HTTP/1.1 408 ") and closed_after < KEEPALIVE_TIMEOUT


@pytest.mark.slow
def test_a_body_that_stops_midway_is_answered_408_and_closed(control):
    # A bearer that can be a join token: a registration's body is read only for one.
    half_body = HALF_HEADERS + b"Authorization: Bearer mvj_x\r\nContent-Length: 100\r\n\r\n" + b'{"name": '
    received, closed_after = until_closed(connect(control, half_body), BODY_TIMEOUT + SLACK)
    assert closed_after is not None and closed_after > BODY_TIMEOUT * 0.8
    assert received.startswith(b"HTTP/1.1 408 ") and b'"error":"request_timeout"' in received


@pytest.mark.slow
def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(control):
    sock = connect(control, b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n")
    assert response(sock).startswith(b"HTTP/1.1 200 ")
    received, closed_after = until_closed(sock, KEEPALIVE_TIMEOUT + SLACK)
    assert received == b"" and closed_after is not None and closed_after > KEEPALIVE_TIMEOUT * 0.8


@pytest.mark.slow
def test_a_hundred_slow_clients_are_closed_while_heartbeats_stay_fast(control):
    token = control.join_token()
    node = enrol.register_sync(control.url, token, "beating").json()
    latencies, failures, stop = [], [], threading.Event()

    def beat():  # an agent, on one kept-alive connection
        with httpx.Client(timeout=5, headers=enrol.auth(node["node_token"])) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = client.post(f"{control.url}/v1/nodes/{node['node_id']}/heartbeat", json={}).status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                latencies.append(time.monotonic() - started)
                if status != 200:
                    failures.append(status)
                stop.wait(0.3)

    beating, started = threading.Thread(target=beat), time.monotonic()
    beating.start()
    slow = [connect(control, HALF_HEADERS[:i % len(HALF_HEADERS)]) for i in range(100)]
    try:
        open_after = wait_closed(slow, HEADER_TIMEOUT + SLACK)
        stop.wait(started + 3.0 - time.monotonic())  # twice the offline threshold in all
    finally:
        stop.set()
        beating.join(10)
        for sock in slow:
            sock.close()
    assert open_after == 0
    assert failures == [] and len(latencies) >= 8 and max(latencies) < 1.0
    listed = httpx.get(control.url + "/v1/nodes", headers=control.admin).json()
    assert [n["online"] for n in listed["nodes"]] == [True]
    assert control.events("node_offline") == []


def wait_closed(socks: list[socket.socket], within: float) -> int:
    """Wait until the server has closed every socket in `socks`; how many are still open after `within` s."""
    deadline = time.monotonic() + within
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while selector.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                try:
                    if key.fileobj.recv(65536):
                        continue  # a 408 first; the close follows
                except ConnectionResetError:
                    pass
                selector.unregister(key.fileobj)
        return len(selector.get_map())


# -- the settings --------------------------------------------------------------

def test_the_limits_are_settings_with_environment_names_and_must_be_positive():
    loaded = config.load(env={"MESHVPN_CONTROL_HEADER_TIMEOUT": "2.5", "MESHVPN_CONTROL_MAX_CONNECTIONS": "64"})
    assert (loaded.header_timeout, loaded.max_connections) == (2.5, 64)
    assert (loaded.body_timeout, loaded.keepalive_timeout) == (10.0, 75.0)
    for name in ("header_timeout", "body_timeout", "keepalive_timeout", "max_connections"):
        with pytest.raises(ValueError, match=name):
            config.load(env={}, **{name: 0})


def test_the_parser_and_the_event_loop_are_settings_that_refuse_unknown_names():
    loaded = config.load(env={"MESHVPN_CONTROL_HTTP_PARSER": "h11", "MESHVPN_CONTROL_EVENT_LOOP": "asyncio"})
    assert (loaded.http_parser, loaded.event_loop) == ("h11", "asyncio")
    assert (config.Config().http_parser, config.Config().event_loop) == ("auto", "auto")
    for name in ("http_parser", "event_loop"):
        with pytest.raises(ValueError, match=name):
            config.load(env={}, **{name: "fastest"})


def test_auto_takes_httptools_when_installed_and_h11_otherwise(monkeypatch):
    assert httpserver.protocol_class("h11") is httpserver.BoundedH11Protocol
    monkeypatch.setattr(httpserver, "bounded_httptools", lambda: (_ for _ in ()).throw(ImportError("httptools")))
    assert httpserver.protocol_class("auto") is httpserver.BoundedH11Protocol
    with pytest.raises(ValueError, match="not installed"):
        httpserver.protocol_class("httptools")


def test_auto_takes_uvloop_only_without_tls_and_an_explicit_loop_is_kept():
    assert httpserver.event_loop_for("auto", tls=False) == "auto"  # uvicorn's auto: uvloop when installed
    assert httpserver.event_loop_for("auto", tls=True) == "asyncio"  # uvloop's TLS keeps dropped streams' memory
    for chosen in ("asyncio", "uvloop"):
        assert httpserver.event_loop_for(chosen, tls=True) == chosen == httpserver.event_loop_for(chosen, tls=False)


def test_the_descriptor_limit_is_raised_to_fit_the_connections_as_far_as_the_hard_limit_allows():
    infinity = resource.RLIM_INFINITY
    assert soft_fd_limit(1024, 524288, 2304) == 2304
    assert soft_fd_limit(1024, 2000, 2304) == 2000
    assert soft_fd_limit(65536, 65536, 2304) == 65536  # never lowered
    assert soft_fd_limit(1024, infinity, 2304) == 2304
    assert soft_fd_limit(infinity, infinity, 2304) == infinity


# -- the log rate limit ----------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def limited():
    """A logger behind a RepeatFilter (3 per 10 s) on a fake clock, and what reaches its handler."""
    logger, clock, collect = logging.getLogger("tests.repeat"), Clock(), Collect()
    repeats = RepeatFilter(limit=3, interval=10.0, clock=clock)
    logger.addFilter(repeats)
    logger.addHandler(collect)
    logger.propagate = False
    yield logger, clock, collect.records
    logger.removeFilter(repeats)
    logger.removeHandler(collect)
    logger.propagate = True


def test_repeats_beyond_the_limit_are_dropped_then_summarised_once(limited):
    logger, clock, records = limited
    for i in range(20):
        logger.error("accept failed on %s", f"fd{i}")  # one template, other arguments: the same kind
        clock.now += 0.1
    assert [r.getMessage() for r in records] == ["accept failed on fd0", "accept failed on fd1", "accept failed on fd2"]
    clock.now += 10
    logger.error("accept failed on %s", "fd20")
    summary, again = records[3:]
    assert summary.repeats_suppressed == 17 and summary.levelno == logging.ERROR
    assert summary.getMessage() == "suppressed 17 repeats of 'accept failed on %s' (at most 3 per 10 s)"
    assert again.getMessage() == "accept failed on fd20"
    clock.now += 10
    logger.error("accept failed on %s", "fd21")
    assert len(records) == 6  # a window without drops ends without a summary


def test_kinds_are_logger_level_and_first_line_of_the_template(limited):
    logger, _, records = limited
    for _ in range(5):
        logger.error("out of resource\nsocket: %s", "a")
        logger.error("out of resource\nsocket: <other socket>")  # the same first line: the same kind
        logger.warning("out of resource\nsocket: %s", "a")
        logging.getLogger("tests.repeat.child").error("out of resource")  # propagated: filtered by its own logger
    assert [(r.levelname, r.name) for r in records].count(("ERROR", "tests.repeat")) == 3
    assert [(r.levelname, r.name) for r in records].count(("WARNING", "tests.repeat")) == 3
    assert [r.name for r in records].count("tests.repeat.child") == 5


def test_a_summary_comes_at_the_next_record_of_any_kind_once_the_window_ended(limited):
    logger, clock, records = limited
    for _ in range(5):
        logger.error("flood")
    clock.now += 11
    logger.info("something else")
    assert [r.getMessage() for r in records[3:]] == ["suppressed 2 repeats of 'flood' (at most 3 per 10 s)",
                                                      "something else"]


def test_tracked_kinds_are_bounded(limited):
    logger, _, records = limited
    repeats = logger.filters[-1]
    for i in range(repeats.max_kinds + 50):
        logger.error(f"kind {i}")
    assert len(repeats.windows) == repeats.max_kinds and len(records) == repeats.max_kinds + 50


def test_setup_logging_limits_asyncio_accept_errors(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    for name in NOISY_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    stream = io.StringIO()
    setup_logging("INFO", stream)
    setup_logging("INFO", stream)  # again, as asgi.py after serve's prepare: still one filter
    asyncio_log = logging.getLogger("asyncio")
    assert len(asyncio_log.filters) == 1
    try:
        raise OSError(24, "Too many open files")
    except OSError as exc:
        error = exc
    for _ in range(2048):  # one accept loop of a listener with backlog 2048
        asyncio_log.error("socket.accept() out of system resource\nsocket: <asyncio.TransportSocket fd=3>",
                          exc_info=error)
    assert stream.getvalue().count("out of system resource") == 10


@pytest.fixture(scope="module")
def capped(tmp_path_factory, http_parser):
    proc = ControlProcess(tmp_path_factory.mktemp("capped"),
                          settings={"max_connections_per_address": 5, "write_timeout": 1.0,
                                    "http_parser": http_parser, "trusted_proxies": "127.0.0.3/32"})
    yield proc.start()
    proc.stop()


@pytest.mark.slow
def test_one_address_cannot_hold_more_than_its_share_of_connections(capped):
    mine = [socket.create_connection(("127.0.0.1", capped.port), timeout=5) for _ in range(5)]
    try:
        over = socket.create_connection(("127.0.0.1", capped.port), timeout=5)
        _, closed_after = until_closed(over, within=3)
        assert closed_after is not None  # the sixth from this address is closed at once
        other = socket.create_connection(("127.0.0.1", capped.port), timeout=5, source_address=("127.0.0.2", 0))
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n")
        assert response(other).startswith(b"HTTP/1.1 200")  # another address is served meanwhile
        other.close()
    finally:
        for sock in mine:
            sock.close()
    time.sleep(0.2)
    again = socket.create_connection(("127.0.0.1", capped.port), timeout=5)
    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n")
    assert response(again).startswith(b"HTTP/1.1 200")  # closing them gave the share back
    again.close()


@pytest.mark.slow
def test_a_trusted_proxy_is_not_held_to_the_share_of_one_address(capped):
    # Every node behind a TLS-terminating proxy reaches the control plane from the proxy's address.
    proxied = [socket.create_connection(("127.0.0.1", capped.port), timeout=5, source_address=("127.0.0.3", 0))
               for _ in range(8)]
    try:
        for sock in proxied:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: control\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n")
        for sock in proxied:
            assert response(sock).startswith(b"HTTP/1.1 200")  # all eight are served, over the five
    finally:
        for sock in proxied:
            sock.close()


@pytest.mark.slow
def test_a_client_that_stops_reading_is_aborted_after_the_write_timeout(capped):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", capped.port))
    sock.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: control\r\n\r\n" * 400)  # ~MBs of answers, unread
    time.sleep(1.0 + SLACK + 1.0)  # the write timeout, with room
    _, closed_after = until_closed(sock, within=20)  # drain what the kernel kept, then the end
    assert closed_after is not None
