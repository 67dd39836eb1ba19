"""Control-plane scale benchmark: N simulated nodes heartbeating, each holding a netmap stream.

The control plane runs as `meshctl serve` (gunicorn + uvicorn workers, `testbed.control_process`)
on 127.0.0.1, on SQLite or on a throwaway PostgreSQL (`testbed/pg.py`). The load generator is light
on purpose, so that it measures the server and not itself: raw asyncio streams and hand-written
HTTP/1.1 (status line, headers, content-length or chunked bodies, server-sent events), no client
objects, the nodes spread over --generators processes. Every node has one kept-alive connection
for its heartbeats and one long-lived connection for its netmap stream, from a loopback address
it shares with 63 others (a NATed site).

One run, per store and size:
1. enrolment: challenge, proof of key possession, registration, many at once in every generator
   process; each node heartbeats (every --interval s, on its own phase) from the moment it is
   enrolled, so none goes offline while the others enrol;
2. every node opens its stream at the current revision (a restarted agent with a cached map:
   the stream carries only changes; a full 10,000-peer map is ~2.5 MB per node);
3. after --warmup s, a window of --duration s: heartbeat latency and rate, and --changes
   membership changes (registrations of new nodes), each timed from before its request until
   the last watcher has it (the `revision` of an event's `data:` JSON); server CPU and RSS
   (gunicorn master and workers, psutil);
4. cold start: the control plane is stopped and started again, then every node reconnects at
   once (its stream with `since` = the last revision it saw, and a heartbeat); the time until
   every stream is back and every node's heartbeat answered, and the `node_offline` lines the
   server logged after the restart (there must be none: the grace period). --cold-starts N does
   it N times; after each, once every node is back, the memory of the server's processes (and of
   the proxy's, apart): whether a burst of reconnections leaves memory held, and whether the next
   one adds to it.

The generator measures itself: how late each heartbeat left against its schedule (only when it
was not waiting for the server's previous answer: that wait is the server's) and the CPU of each
of its processes. When its lag p99 is over 100 ms or a process used more than 90 % of a core, it
fell behind, and it refuses to report figures: the run is marked refused and the exit status is 3.
What else ran on the machine meanwhile is measured too (`machine_other_cores`, the load average):
past half a core the run is marked `noisy`, reported, but not a measure of the server alone.

    python bench/control_scale.py                      # 1,000 and 10,000 nodes, SQLite and PostgreSQL
    python bench/control_scale.py --nodes 10000 --duration 60 --json --store sqlite|postgresql [--workers 2]
    python bench/control_scale.py --nodes 10000 --store sqlite --tls   # TLS, as deployed (every connection
                                                                        # a TLS session; auto's loop: asyncio)
    python bench/control_scale.py --nodes 10000 --store sqlite --tls-proxy   # TLS terminated by HAProxy in
                                                                        # front (testbed/tls_proxy.py), plain behind

Results: bench/results/control_scale-<run id>.json (every run of the invocation); --json prints
one JSON object (the run, or {"run_id", "runs"} for several), otherwise a table.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import psutil
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from control import config
from meshcommon.contract import keys
from testbed import pg, tls_proxy
from testbed.certs import certificate
from testbed.control_process import ControlProcess

RESULTS = Path(__file__).with_name("results")
NODES_PER_ADDRESS = 64  # nodes sharing one source address, as behind a NAT (the server caps 2,048 per address)
ANSWER_TIMEOUT = 30.0  # seconds for an answer; past it the connection is dropped and the request failed
MAX_LAG_P99 = 0.100  # the generator's own lateness past which it refuses to report
MAX_GENERATOR_CPU = 0.90  # of one core, per generator process
NOISY_OTHER_CORES = 0.5  # cores other work used during the window past which a run is marked noisy (not refused)
CHANGE_TIMEOUT = 180.0  # seconds for a registration: an overloaded server is measured, not failed
ENROL_ATTEMPTS = 4  # of a registration the server refused (not of one it did not answer)
ENROL_CONCURRENCY = 32  # registrations in flight, in all: more only queue (and on SQLite, convoy)
FANOUT_S = 2.0  # seconds after a change that count as its fan-out, for heartbeat_p99_quiet_ms
STREAMS_OPEN_LIMIT = 300.0  # seconds for every node to open its stream
OPEN_CONCURRENCY = 256  # streams being opened at once per generator process (the listen backlog is 2,048)
REFUSED_EXIT = 3
WANTED_FDS = 1 << 17
FD_SPARE = 512  # descriptors of a server worker or generator besides its connections


class Revision(msgspec.Struct):
    revision: int


class HttpError(Exception):
    pass


# -- minimal HTTP/1.1 ------------------------------------------------------------

def request(method: str, path: str, token: str, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body; b"" is the last."""
    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
    return (await reader.readexactly(size + 2))[:-2] if size else b""


async def read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if b"content-length" in headers:
        return await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while chunk := await read_chunk(reader):
            parts.append(chunk)
        await reader.readuntil(b"\r\n")  # the end of the (empty) trailer
        return b"".join(parts)
    return b""


# The CA of a control plane serving TLS (--tls), in each process that connects; None: plain HTTP.
TLS: ssl.SSLContext | None = None


def trust(cafile: str | None) -> None:
    global TLS
    TLS = ssl.create_default_context(cafile=cafile) if cafile else None


async def connect(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), limit=1 << 22, ssl=TLS)


class Connection:
    """One kept-alive HTTP/1.1 connection from `source`, opened again after any failure."""

    def __init__(self, port: int, source: str):
        self.port, self.source = port, source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, data: bytes, timeout: float = ANSWER_TIMEOUT) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(timeout):
                if self.writer is None:
                    self.reader, self.writer = await connect(self.port, self.source)
                self.writer.write(data)
                status, headers = await read_head(self.reader)
                body = await read_body(self.reader, headers)
        except BaseException:
            self.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def enrol(conn: Connection, join_token: str, name: str, timeout: float = ANSWER_TIMEOUT) -> tuple[dict, float]:
    """Challenge, prove and register, as an agent does; (the answer, when the registration was sent)."""
    status, body = await conn.call(request("GET", "/v1/challenge", join_token), timeout)
    if status != 200:
        raise HttpError(f"challenge: {status} {body[:200]!r}")
    challenge = json.loads(body)
    private = keys.new_private_key()
    public = keys.public_key_of(private)
    payload = json.dumps({"public_key": public, "name": name, "nonce": challenge["nonce"],
                          "proof": keys.prove(private, challenge["control_key"], challenge["nonce"])}).encode()
    sent = time.monotonic()
    status, body = await conn.call(request("POST", "/v1/register", join_token, payload), timeout)
    if status != 200:
        raise HttpError(f"register: {status} {body[:200]!r}")
    return json.loads(body), sent


def source_of(index: int) -> str:
    site = index // NODES_PER_ADDRESS + 1
    return f"127.77.{site // 250}.{site % 250 + 1}"


def resolved(choice: str, fast: str, fallback: str) -> str:
    """What the server's "auto" comes to here: `fast` when that module is installed."""
    if choice != "auto":
        return choice
    return fast if importlib.util.find_spec(fast) else fallback


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


# -- the load generator (one per process) -----------------------------------------

@dataclass(eq=False, slots=True)
class Node:
    index: int
    conn: Connection
    node_id: str = ""
    token: str = ""
    origin: float = 0.0  # its first heartbeat slot; the others follow every interval
    revision: int = 0  # the last revision its stream delivered
    events: list[tuple[int, float]] = field(default_factory=list)  # (revision, when) of each netmap event
    stream_back: float | None = None  # cold start: its stream answered again
    beat_back: float | None = None  # cold start: a heartbeat answered again


class Generator:
    """Simulated nodes of one process, driven by commands from the orchestrating process."""

    def __init__(self, port: int, interval: float, indices: list[int], pipe):
        self.port, self.interval, self.pipe = port, interval, pipe
        self.nodes = [Node(i, Connection(port, source_of(i))) for i in indices]
        self.beats: list[tuple[float, float | None]] = []  # (slot, latency or None when it failed)
        self.lags: list[tuple[float, float]] = []  # (slot, how late the generator sent it)
        self.inflight: dict[int, float] = {}  # node index -> slot of its heartbeat in flight
        self.errors: Counter[str] = Counter()
        self.stream_drops = 0
        self.streams_open = 0
        self.heartbeat_tasks: list[asyncio.Task] = []
        self.stream_tasks: list[asyncio.Task] = []
        self.paused = False  # the control plane is being restarted
        self.resumed: asyncio.Event | None = None  # set unless paused

    async def main(self) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()
        loop = asyncio.get_running_loop()
        while True:
            command, argument = await loop.run_in_executor(None, self.pipe.recv)
            self.pipe.send(await getattr(self, command)(argument))
            if command == "stop":
                return

    # -- heartbeats

    def slot_after(self, node: Node, when: float) -> float:
        return node.origin + math.ceil(max(0.0, when - node.origin) / self.interval) * self.interval

    async def heartbeat(self, node: Node) -> bool:
        body = b'{"applied_revision":%d}' % node.revision
        try:
            status, _ = await node.conn.call(request("POST", f"/v1/nodes/{node.node_id}/heartbeat", node.token, body))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
            self.errors[type(exc).__name__] += 1
            return False
        if status != 200:
            self.errors[f"heartbeat {status}"] += 1
        return status == 200

    async def heartbeats(self, node: Node, cold: bool) -> None:
        if cold:  # just after a restart: at once, and again until answered
            while not await self.heartbeat(node):
                await asyncio.sleep(1.0)
            node.beat_back = time.monotonic()
        slot = self.slot_after(node, time.monotonic())
        while True:
            now = time.monotonic()
            if slot > now:
                await asyncio.sleep(slot - now)
                started = time.monotonic()
                self.lags.append((slot, started - slot))
            else:
                started = slot  # late because the server's last answer was: its time, not ours
            self.inflight[node.index] = slot
            ok = await self.heartbeat(node)
            del self.inflight[node.index]
            self.beats.append((slot, time.monotonic() - started if ok else None))
            slot += self.interval

    # -- netmap streams

    def on_event(self, node: Node, block: bytes, when: float) -> None:
        if block.startswith(b":"):
            return  # a keepalive comment
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                revision = msgspec.json.decode(line[5:], type=Revision).revision
                node.revision = max(node.revision, revision)
                node.events.append((revision, when))
            elif line.startswith(b"event: error"):
                self.errors["stream error event"] += 1

    async def read_events(self, node: Node, reader: asyncio.StreamReader) -> None:
        """Events of a chunked SSE body until it ends: whatever arrived, one read at a time (a read
        per chunk would cost the generator twice the awaits when 5,000 streams wake at once)."""
        framed, text = b"", b""
        while data := await reader.read(1 << 16):
            when = time.monotonic()
            framed += data
            while (line := framed.find(b"\r\n")) >= 0:
                size = int(framed[:line].split(b";")[0], 16)
                if size == 0:
                    return  # the last chunk: the server ended the stream
                if len(framed) < line + size + 4:
                    break
                text += framed[line + 2:line + 2 + size]
                framed = framed[line + size + 4:]
            while (end := text.find(b"\n\n")) >= 0:
                self.on_event(node, text[:end], when)
                text = text[end + 2:]

    async def stream(self, node: Node, opening: asyncio.Semaphore) -> None:
        while True:
            await self.resumed.wait()
            writer, counted = None, False
            try:
                async with opening:
                    async with asyncio.timeout(ANSWER_TIMEOUT):
                        reader, writer = await connect(self.port, node.conn.source)
                        writer.write(request("GET", f"/v1/netmap?since={node.revision}&stream=true", node.token))
                        status, _ = await read_head(reader)
                if status != 200:
                    raise HttpError(f"stream {status}")
                self.streams_open += 1
                counted = True
                if node.stream_back is None:
                    node.stream_back = time.monotonic()
                await self.read_events(node, reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, HttpError,
                    ValueError) as exc:
                self.errors[f"stream {type(exc).__name__}"] += 1
            finally:
                if writer is not None:
                    writer.close()
                self.streams_open -= counted
            if not self.paused:
                self.stream_drops += 1
                await asyncio.sleep(1.0)

    # -- commands

    async def enrol(self, argument: dict) -> dict:
        gate = asyncio.Semaphore(argument["concurrency"])
        failed = 0

        async def one(node: Node) -> None:
            nonlocal failed
            async with gate:
                for attempt in range(ENROL_ATTEMPTS):
                    try:
                        answer, _ = await enrol(node.conn, argument["join_token"], f"sim{node.index}",
                                                CHANGE_TIMEOUT)
                        break
                    except HttpError as exc:  # answered, so not made (a 503 when the store was busy): again
                        self.errors[f"enrol {exc}"[:80]] += 1
                        await asyncio.sleep(0.5 * 2 ** attempt)
                    except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                        # Never again: a registration without an answer may have been made, and a retry
                        # would make another.
                        self.errors[f"enrol {exc!r}"[:80]] += 1
                        failed += 1
                        return
                else:
                    failed += 1
                    return
            node.node_id, node.token = answer["node_id"], answer["node_token"]
            node.origin = time.monotonic() + random.uniform(0, self.interval)
            self.heartbeat_tasks.append(asyncio.create_task(self.heartbeats(node, cold=False)))

        await asyncio.gather(*(one(node) for node in self.nodes))
        errors, self.errors = dict(self.errors), Counter()
        return {"failed": failed, "errors": errors}

    async def watch(self, argument: dict) -> dict:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        for node in self.nodes:
            node.revision = argument["revision"]
            node.stream_back = None if argument["streams"] else 0.0
        if argument["streams"]:
            self.stream_tasks = [asyncio.create_task(self.stream(node, gate)) for node in self.nodes if node.token]
        deadline = time.monotonic() + argument["limit"]
        while self.streams_open < len(self.stream_tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.stream_drops = 0
        errors, self.errors = dict(self.errors), Counter()
        return {"open": self.streams_open, "errors": errors}

    async def report(self, argument: dict) -> dict:
        start, end = argument["window"]
        deadline = time.monotonic() + ANSWER_TIMEOUT + 5
        while any(slot < end for slot in self.inflight.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        beats = [latency for slot, latency in self.beats if start <= slot < end]
        wakes = []
        for revision, sent in argument["changes"]:
            delays = []
            for node in self.nodes if self.stream_tasks else ():
                first = next((when for seen, when in node.events if seen >= revision and when >= sent), None)
                delays.append(None if first is None else first - sent)
            wakes.append(delays)
        # Heartbeats sent while no change was being fanned out (none in the FANOUT_S after one):
        # what a change's fan-out adds to the heartbeat tail is the difference.
        quiet = [latency for slot, latency in self.beats if start <= slot < end and latency is not None
                 and not any(sent <= slot + latency and slot < sent + FANOUT_S for _, sent in argument["changes"])]
        slowest: dict[int, float] = {}  # second of the window -> its slowest heartbeat: when the tail happens
        for slot, latency in self.beats:
            if start <= slot < end and latency is not None:
                second = int(slot - start)
                slowest[second] = max(slowest.get(second, 0.0), latency)
        return {"latencies": [latency for latency in beats if latency is not None], "quiet": quiet,
                "slowest": slowest,
                "failed": sum(1 for latency in beats if latency is None),
                "lags": [lag for slot, lag in self.lags if start <= slot < end],
                "wakes": wakes, "stream_drops": self.stream_drops, "errors": dict(self.errors)}

    async def stop_heartbeats(self) -> None:
        """Every node stops heartbeating and closes its heartbeat connection (streams are left as they are)."""
        for task in self.heartbeat_tasks:
            task.cancel()
        await asyncio.gather(*self.heartbeat_tasks, return_exceptions=True)
        self.heartbeat_tasks = []
        for node in self.nodes:
            node.conn.close()

    async def pause(self, argument: None) -> None:
        """The control plane is about to stop: heartbeats stop, streams wait for `resume` once ended."""
        self.paused = True
        self.resumed.clear()
        await self.stop_heartbeats()
        for node in self.nodes:
            node.beat_back = None
            if self.stream_tasks:
                node.stream_back = None

    async def resume(self, argument: dict) -> dict:
        """Everyone reconnects at once; answers when every node is back (or at the limit)."""
        self.paused = False
        self.errors.clear()
        self.heartbeat_tasks = [asyncio.create_task(self.heartbeats(node, cold=True)) for node in self.nodes
                                if node.token]
        self.resumed.set()
        deadline = time.monotonic() + argument["limit"]
        enrolled = [node for node in self.nodes if node.token]
        while time.monotonic() < deadline and not all(n.stream_back is not None and n.beat_back for n in enrolled):
            await asyncio.sleep(0.05)
        return {"back": [max(n.stream_back, n.beat_back) if n.stream_back is not None and n.beat_back else None
                         for n in enrolled], "errors": dict(self.errors)}

    async def stop(self, argument: None) -> None:
        for task in self.heartbeat_tasks + self.stream_tasks:
            task.cancel()
        await asyncio.gather(*self.heartbeat_tasks, *self.stream_tasks, return_exceptions=True)
        for node in self.nodes:
            node.conn.close()


def generator_main(port: int, interval: float, indices: list[int], pipe, nice: int, cafile: str | None) -> None:
    trust(cafile)
    # At the server's niceness the generator and the server share the cores fairly; a lower one puts
    # it ahead of the server, whose fan-outs it then slows (it reads 10,000 events at that moment).
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(Generator(port, interval, indices, pipe).main())


def loop_factory():
    """uvloop when installed: the generator spends half the CPU per event of asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# -- orchestration ------------------------------------------------------------------

class Generators:
    """The generator processes, told the same command at once."""

    def __init__(self, count: int, nodes: int, port: int, interval: float, nice: int, cafile: str | None,
                 target=generator_main):
        context = mp.get_context("spawn")
        self.pipes, self.processes = [], []
        for share in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=target, daemon=True,
                                      args=(port, interval, list(range(share, nodes, count)), theirs, nice, cafile))
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)
        self.usage = [psutil.Process(process.pid) for process in self.processes]

    async def tell(self, command: str, argument=None) -> list:
        for pipe in self.pipes:
            pipe.send((command, argument))
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(None, pipe.recv) for pipe in self.pipes]

    def cpu(self) -> list[float]:
        return [sum(process.cpu_times()[:2]) for process in self.usage]

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join()


@dataclass
class Server:
    """The control plane under test and where nodes reach it: its own port, or a TLS proxy's in front."""
    control: ControlProcess
    proxies: list[tls_proxy.HAProxy] = field(default_factory=list)  # instances sharing one port

    @property
    def port(self) -> int:
        return self.proxies[0].port if self.proxies else self.control.port


def server_processes(server: Server) -> list[psutil.Process]:
    """Every process serving the nodes: gunicorn's master and workers, and the proxy when there is one."""
    root = psutil.Process(server.control.proc.pid)
    return [root, *root.children(recursive=True), *tls_proxy.processes(server.proxies)]


def server_cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(process.cpu_times()[:2])
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all but idle and I/O wait)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "guest", 0.0) \
        - getattr(times, "guest_nice", 0.0)


def server_rss(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


async def server_wakes(server: Server) -> dict[float, float]:
    """The server's own wake histogram (cumulative counts by upper bound, all workers): from a
    worker loading a revision to a waiting stream's event being ready."""
    body = (await Connection(server.port, "127.0.0.1").call(request("GET", "/metrics", "-")))[1]
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "meshvpn_control_longpoll_wake_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    counts[float(sample.labels["le"])] = counts.get(float(sample.labels["le"]), 0.0) + sample.value
    return counts


def bucket_quantile(counts: dict[float, float], q: float) -> float | None:
    """The upper bound of the histogram bucket that holds quantile `q` (None: nothing counted)."""
    total = counts.get(math.inf, 0.0)
    for le in sorted(counts):
        if total and counts[le] >= q * total:
            return le
    return None


def log_events(path: Path, offset: int, name: str) -> list[dict]:
    with open(path, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    return [record for line in lines if line.startswith("{") and (record := json.loads(line)).get("event") == name]


class Changes:
    """Membership changes made during the window, and heartbeats for the nodes they enrol."""

    def __init__(self, server: Server, join_token: str, interval: float):
        self.server, self.join_token, self.interval = server, join_token, interval
        self.conn = Connection(server.port, "127.0.0.1")
        self.made: list[tuple[int, float, float]] = []  # (revision, sent, registration took)
        self.nodes: list[tuple[str, str]] = []

    async def make(self, names: list[str], times: list[float]) -> None:
        """Register a node named `names[i]` at each of `times` (or as soon after as the last one is done)."""
        for name, at in zip(names, times, strict=True):
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            answer, sent = await enrol(self.conn, self.join_token, name, timeout=CHANGE_TIMEOUT)
            self.made.append((answer["revision"], sent, time.monotonic() - sent))
            self.nodes.append((answer["node_id"], answer["node_token"]))

    async def keep_alive(self) -> None:
        conn = Connection(self.server.port, "127.0.0.1")
        while True:
            for node_id, token in list(self.nodes):
                with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                    await conn.call(request("POST", f"/v1/nodes/{node_id}/heartbeat", token, b"{}"))
            await asyncio.sleep(self.interval)


async def profile(server: Server, seconds: float, name: str) -> None:
    """Sample every worker with py-spy for `seconds`: collapsed stacks (flamegraph input), one file each,
    `bench/results/<name>-<worker>.pyspy.txt`."""
    workers = [p.pid for p in psutil.Process(server.control.proc.pid).children(recursive=True)]
    spies = [await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--duration", str(int(seconds)),
        "--rate", "50", "--format", "raw", "--output", str(RESULTS / f"{name}-{i}.pyspy.txt"), "--nonblocking",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i, pid in enumerate(workers)]
    await asyncio.gather(*(spy.wait() for spy in spies))


def summarise(args, store: str, nodes: int, reports: list[dict], window: float, server_cpu_s: float,
              rss: list[int], generator_cpu: list[float], changes: Changes) -> dict:
    latencies = [x for r in reports for x in r["latencies"]]
    quiet = [x for r in reports for x in r["quiet"]]
    slowest = [max((r["slowest"].get(second, 0.0) for r in reports), default=0.0) for second in range(int(window))]
    lags = [x for r in reports for x in r["lags"]]
    per_change = []
    for i, (revision, _, took) in enumerate(changes.made):
        delays = [d for r in reports for d in r["wakes"][i]]
        reached = [d for d in delays if d is not None]
        per_change.append({"revision": revision, "registration_ms": round(took * 1000, 1),
                           "watchers": len(delays), "reached": len(reached),
                           "all_s": round(max(reached), 3) if len(reached) == len(delays) and reached else None,
                           "p50_s": round(percentile(reached, 0.5), 3) if reached else None})
    every = [d for r in reports for w in r["wakes"] for d in w]
    reached = [d for d in every if d is not None]
    all_times = [c["all_s"] if c["all_s"] is not None else math.inf for c in per_change if c["watchers"]]
    lag_p99 = percentile(lags, 0.99) or 0.0
    row = {
        "store": store, "nodes": nodes, "workers": args.workers, "generators": args.generators,
        "streams": args.streams, "nice": args.nice, "generator_nice": args.generator_nice,
        "http_parser": resolved(args.http_parser, "httptools", "h11"),
        "event_loop": "asyncio" if args.tls and args.event_loop == "auto" else resolved(args.event_loop, "uvloop",
                                                                                              "asyncio"),
        "tls": args.tls or args.tls_proxy, "tls_proxy": "haproxy" if args.tls_proxy else None,
        "interval_s": args.interval, "offline_after_s": args.interval * 3, "duration_s": window,
        "target_heartbeat_rate": round(nodes / args.interval, 1),
        "achieved_heartbeat_rate": round(len(latencies) / window, 1),
        "heartbeats_failed": sum(r["failed"] for r in reports),
        "heartbeat_p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
        "heartbeat_p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "heartbeat_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "heartbeat_p99_quiet_ms": round(percentile(quiet, 0.99) * 1000, 1) if quiet else None,
        "heartbeat_max_ms_by_second": [round(x * 1000) for x in slowest],
        "wake_p99_s": (round(percentile(all_times, 0.99), 3) if all(math.isfinite(t) for t in all_times)
                       else None) if all_times else None,
        "wake_watcher_p99_s": round(percentile(reached, 0.99), 3) if reached else None,
        "wake_missed": sum(1 for d in every if d is None),
        "changes": per_change,
        "server_cpu_cores": round(server_cpu_s / window, 2),
        "server_rss_mb": round(max(rss) / 2**20, 1), "server_rss_end_mb": round(rss[-1] / 2**20, 1),
        "generator_lag_p50_ms": round((percentile(lags, 0.5) or 0.0) * 1000, 1),
        "generator_lag_p99_ms": round(lag_p99 * 1000, 1),
        "generator_cpu_cores": [round(c, 2) for c in generator_cpu],
        "stream_drops": sum(r["stream_drops"] for r in reports),
        "errors": dict(sum((Counter(r["errors"]) for r in reports), Counter())),
    }
    if lag_p99 > MAX_LAG_P99:
        row["refused"] = f"generator lag p99 {lag_p99 * 1000:.0f} ms > {MAX_LAG_P99 * 1000:.0f} ms"
    elif max(generator_cpu) > MAX_GENERATOR_CPU:
        row["refused"] = f"a generator process used {max(generator_cpu):.2f} cores > {MAX_GENERATOR_CPU}"
    return row


async def cold_start(server: Server, generators: Generators, args, name: str) -> dict:
    """Stop and start the control plane (not the proxy); every node reconnects at once when it is up."""
    control = server.control
    await generators.tell("pause")
    stopped = time.monotonic()
    await asyncio.to_thread(control.stop)
    offset = control.log_path.stat().st_size
    await asyncio.to_thread(control.start, 60.0)
    ready = time.monotonic()
    offline_after = args.interval * 3
    spying = asyncio.create_task(profile(server, 20, name)) if args.profile else None
    replies = await generators.tell("resume", {"limit": max(60.0, 4 * offline_after)})
    back = [b for reply in replies for b in reply["back"]]
    # The grace after the restart lasts offline_after from the first sweep: watch past its end.
    await asyncio.sleep(max(0.0, ready + offline_after + 3.0 - time.monotonic()))
    if spying is not None:
        await spying
    reached = [b - ready for b in back if b is not None]
    return {"server_restart_s": round(ready - stopped, 2),
            "cold_start_s": round(max(reached), 2) if len(reached) == len(back) else None,
            "cold_start_p50_s": round(percentile(reached, 0.5), 2) if reached else None,
            "cold_start_not_back": len(back) - len(reached),
            "cold_start_offline": len(log_events(control.log_path, offset, "node_offline")),
            "cold_start_grace": bool(log_events(control.log_path, offset, "liveness_grace")),
            "cold_start_errors": dict(sum((Counter(r["errors"]) for r in replies), Counter()))}


def proxy_rss_mb(server: Server) -> list[float]:
    """RSS of each proxy instance (none without --tls-proxy)."""
    return [round(server_rss([process]) / 2**20, 1) for process in tls_proxy.processes(server.proxies)]


def memory_after_cold_start(server: Server, restart: dict) -> dict:
    """Once every node is back: how long that took, and what the server's processes hold now."""
    return {"cold_start_s": restart["cold_start_s"], "cold_start_not_back": restart["cold_start_not_back"],
            "cold_start_offline": restart["cold_start_offline"],
            "server_rss_mb": round(server_rss(server_processes(server)) / 2**20, 1),
            "proxy_rss_mb": proxy_rss_mb(server)}


async def measure(server: Server, args, store: str, nodes: int, run_id: str, cafile: str | None) -> dict:
    control = server.control
    join_token = await asyncio.to_thread(control.join_token, True)
    generators = Generators(args.generators, nodes, server.port, args.interval, args.generator_nice, cafile)
    changes = Changes(server, join_token, args.interval)
    keeping = asyncio.create_task(changes.keep_alive())
    try:
        started = time.monotonic()
        replies = await generators.tell("enrol", {"join_token": join_token,
                                                  "concurrency": max(1, ENROL_CONCURRENCY // args.generators)})
        registration_s = time.monotonic() - started
        if sum(reply["failed"] for reply in replies):
            errors = sum((Counter(reply["errors"]) for reply in replies), Counter())
            raise RuntimeError(f"{sum(reply['failed'] for reply in replies)} nodes could not enrol: {dict(errors)}")
        enrol_errors = dict(sum((Counter(reply["errors"]) for reply in replies), Counter()))
        revision = json.loads((await Connection(server.port, "127.0.0.1").call(
            request("GET", "/healthz", "-")))[1])["revision"]
        started = time.monotonic()
        spying = (asyncio.create_task(profile(server, 20, f"control_scale-{run_id}-{store}-{nodes}-open"))
                  if args.profile and args.streams else None)
        replies = await generators.tell("watch", {"revision": revision, "limit": STREAMS_OPEN_LIMIT,
                                                  "streams": args.streams})
        streams_open_s = time.monotonic() - started
        opened = sum(reply["open"] for reply in replies)  # fewer than all: measured anyway, and said
        await asyncio.sleep(args.warmup)
        if spying is not None:
            await spying

        processes = server_processes(server)
        wakes_before = await server_wakes(server)
        rss = [server_rss(processes)]
        start = time.monotonic()
        cpu_before, generators_before = server_cpu(processes), generators.cpu()
        machine_before, me_before = machine_busy(), sum(psutil.Process().cpu_times()[:2])
        profiling = None
        if args.profile:
            profiling = asyncio.create_task(profile(server, args.duration * 0.9,
                                                    f"control_scale-{run_id}-{store}-{nodes}-window"))
        step = args.duration / args.changes
        changing = asyncio.create_task(changes.make([f"change{nodes}-{i}" for i in range(args.changes)],
                                                    [start + (i + 0.5) * step for i in range(args.changes)]))
        while (now := time.monotonic()) < start + args.duration:
            await asyncio.sleep(min(1.0, start + args.duration - now))
            rss.append(server_rss(processes))
        window = time.monotonic() - start
        load = os.getloadavg()[0]
        server_cpu_s = server_cpu(processes) - cpu_before
        generator_cpu = [(after - before) / window
                         for before, after in zip(generators_before, generators.cpu(), strict=True)]
        # Whatever else ran meanwhile (other work on a shared machine, py-spy): the server's rivals.
        ours = server_cpu_s + sum(generator_cpu) * window + sum(psutil.Process().cpu_times()[:2]) - me_before
        other_cores = (machine_busy() - machine_before - ours) / window
        if profiling is not None:
            await profiling
        await changing  # each within CHANGE_TIMEOUT; a change that came late is still timed to its last watcher
        await asyncio.sleep(2.0)
        wakes_after = await server_wakes(server)
        woken = {le: count - wakes_before.get(le, 0.0) for le, count in wakes_after.items()}
        reports = await generators.tell("report", {"window": (start, start + args.duration),
                                                   "changes": [(rev, sent) for rev, sent, _ in changes.made]})
        row = {"run_id": run_id, **summarise(args, store, nodes, reports, window, server_cpu_s, rss,
                                             generator_cpu, changes),
               "proxy_processes": len(server.proxies),
               "registration_s": round(registration_s, 1), "registration_errors": enrol_errors,
               "streams_open_s": round(streams_open_s, 1),
               "streams_opened": opened, "machine_load_1m": round(load, 2),
               "machine_other_cores": round(max(0.0, other_cores), 2),
               "noisy": other_cores > NOISY_OTHER_CORES,
               "stream_open_errors": dict(sum((Counter(reply["errors"]) for reply in replies), Counter()))}
        row["server_wake_p50_le_s"] = bucket_quantile(woken, 0.5)
        row["server_wake_p99_le_s"] = bucket_quantile(woken, 0.99)
        for change, (_, sent, _) in zip(row.get("changes", []), changes.made, strict=False):
            change["at_s"] = round(sent - start, 1)  # into the window, beside heartbeat_max_ms_by_second
        row["offline_steady"] = len(log_events(control.log_path, 0, "node_offline"))
        row["proxy_rss_mb_window_end"] = proxy_rss_mb(server)
        if not args.no_cold_start:
            row.update(await cold_start(server, generators, args, f"control_scale-{run_id}-{store}-{nodes}-cold"))
            row["after_cold_starts"] = [memory_after_cold_start(server, row)]
            for again in range(2, args.cold_starts + 1):
                restart = await cold_start(server, generators, args,
                                           f"control_scale-{run_id}-{store}-{nodes}-cold{again}")
                row["after_cold_starts"].append(memory_after_cold_start(server, restart))
        await generators.tell("stop")
        return row
    finally:
        keeping.cancel()
        generators.kill()


def run(store: str, nodes: int, args, pg_admin_url: str | None, run_id: str, fds: int) -> dict:
    workers = args.workers or processes_for(nodes, fds)
    if processes_for(nodes, fds) > workers:
        raise SystemExit(f"{nodes} nodes hold {2 * nodes} connections: {workers} worker(s) with {fds} descriptors "
                         f"each cannot, use --workers {processes_for(nodes, fds)}")
    args = argparse.Namespace(**{**vars(args), "workers": workers,
                                 "generators": max(args.generators, processes_for(nodes, fds))})
    db_url = pg.fresh_database(pg_admin_url) if store == "postgresql" else None
    state = Path(tempfile.mkdtemp(prefix="meshvpn-bench-"))
    pair = certificate(state) if args.tls or args.tls_proxy else None
    trust(str(pair[0]) if pair else None)
    # The connection cap below the descriptor limit, as docs/design.md asks: over it the server answers 503.
    settings = {"max_connections": fds - FD_SPARE, "http_parser": args.http_parser, "event_loop": args.event_loop}
    if args.tls_proxy:  # plain HTTP behind the proxy, which it trusts for the nodes' addresses
        settings["trusted_proxies"] = f"{tls_proxy.ADDRESS}/32"
    control = ControlProcess(state, db_url, workers=workers, heartbeat_interval=args.interval,
                             offline_after=args.interval * 3, cidr="100.64.0.0/10",
                             tls=None if args.tls_proxy else pair, settings=settings).start()
    server = Server(control)
    try:
        if args.tls_proxy:
            server.proxies = tls_proxy.proxies(state, *pair, control.port, connections=2 * nodes + FD_SPARE)
        return asyncio.run(measure(server, args, store, nodes, run_id, str(pair[0]) if pair else None))
    finally:
        for proxy in server.proxies:
            proxy.stop()
        control.stop()
        shutil.rmtree(state, ignore_errors=True)


def fd_limit() -> int:
    """Raise this process's descriptor limit (the server and generators inherit it); the limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):  # above the hard limit only with CAP_SYS_RESOURCE
        resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_FDS, max(hard, WANTED_FDS)))
        return WANTED_FDS
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def processes_for(nodes: int, fds: int) -> int:
    """The fewest processes that can hold the 2 connections of each of `nodes` with `fds` descriptors each."""
    return max(1, math.ceil(2 * nodes / (fds - FD_SPARE)))


# What a refused run still reports: what was run, and the generator's own figures.
GENERATOR_FIGURES = ("run_id", "store", "nodes", "workers", "generators", "nice", "generator_nice", "streams",
                     "http_parser", "event_loop", "tls", "tls_proxy",
                     "interval_s", "duration_s", "generator_lag_p50_ms", "generator_lag_p99_ms", "generator_cpu_cores",
                     "machine_load_1m", "machine_other_cores", "noisy", "refused")


def table(rows: list[dict]) -> str:
    head = (f"{'store':9} {'nodes':>6} {'wk':>2} {'hb/s':>13} {'hb p50/p99 ms':>15} {'wake p99 s':>10} "
            f"{'cpu':>5} {'rss MB':>7} {'reg s':>6} {'cold s':>6} {'offl':>4} {'lag p99':>7} {'others':>6}")
    lines = [head]
    for row in rows:
        if "refused" in row:
            lines.append(f"{row['store']:9} {row['nodes']:>6} {row['workers']:>2} REFUSED: {row['refused']}")
            continue
        lines.append(
            f"{row['store']:9} {row['nodes']:>6} {row['workers']:>2} "
            f"{row['achieved_heartbeat_rate']:>6}/{row['target_heartbeat_rate']:<6} "
            f"{row['heartbeat_p50_ms']!s:>7}/{row['heartbeat_p99_ms']!s:<7} {row['wake_p99_s']!s:>10} "
            f"{row['server_cpu_cores']:>5} {row['server_rss_mb']:>7} {row['registration_s']:>6} "
            f"{row.get('cold_start_s')!s:>6} {row.get('cold_start_offline')!s:>4} {row['generator_lag_p99_ms']:>7} "
            f"{row['machine_other_cores']:>6}{' noisy' if row.get('noisy') else ''}")
    return "\n".join(lines)


def public(row: dict) -> dict:
    """What a run may report: everything, or, when the generator fell behind, only why and its own figures."""
    if "refused" not in row:
        return row
    return {key: value for key, value in row.items() if key in GENERATOR_FIGURES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", "--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--store", "--stores", nargs="+", default=["sqlite", "postgresql"],
                        type=lambda name: "postgresql" if name == "postgres" else name,
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the measurement window")
    parser.add_argument("--workers", type=int, default=None,
                        help="uvicorn workers of the control plane (default: the fewest whose descriptors fit)")
    parser.add_argument("--generators", "--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the whole benchmark: the server, its store and the generator (negative: "
                             "ahead of other work on a shared machine, which is still measured: machine_other_cores)")
    parser.add_argument("--generator-nice", type=int, default=None,
                        help="niceness of the generator processes (default: --nice; below it: ahead of the server)")
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval of the simulated nodes")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds between opening the streams and measuring")
    parser.add_argument("--changes", type=int, default=6, help="membership changes in the window")
    parser.add_argument("--http-parser", choices=config.HTTP_PARSERS, default="auto",
                        help="the server's HTTP parser (auto: httptools when installed)")
    parser.add_argument("--event-loop", choices=config.EVENT_LOOPS, default="auto",
                        help="the server's event loop (auto: uvloop when installed)")
    parser.add_argument("--tls", action="store_true",
                        help="the server serves TLS itself, as a deployment without HAProxy in front does "
                             "(auto's event loop is then asyncio)")
    parser.add_argument("--tls-proxy", action="store_true",
                        help="TLS terminated by HAProxy in front (the meshvpn_control role's haproxy.cfg.j2); the "
                             "server behind it plain (auto's event loop: uvloop), trusting the proxy's X-Forwarded-For")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the restart at the end")
    parser.add_argument("--cold-starts", type=int, default=1,
                        help="restarts at the end, each followed by the server's memory once every node is back")
    parser.add_argument("--no-streams", dest="streams", action="store_false",
                        help="nodes only heartbeat (what a stream costs, by difference)")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the window")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.tls and args.tls_proxy:
        parser.error("--tls serves TLS from the control plane, --tls-proxy from a proxy in front: one or the other")
    if args.tls_proxy and not tls_proxy.available():
        parser.error("--tls-proxy needs haproxy (apt install haproxy)")
    if args.generator_nice is None:
        args.generator_nice = args.nice
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by the server, PostgreSQL and the generators
    fds = fd_limit()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # clean up as on ^C
    RESULTS.mkdir(exist_ok=True)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"control_scale-{run_id}.json"
    rows = []
    with pg.server() as pg_admin_url:
        for store in args.store:
            if store == "postgresql" and pg_admin_url is None:
                print("skipping postgresql: not installed", file=sys.stderr)
                continue
            for nodes in args.nodes:
                row = run(store, nodes, args, pg_admin_url, run_id, fds)
                rows.append(public(row))
                if "refused" in row:
                    print(f"REFUSED {store} {nodes}: the load generator fell behind ({row['refused']}); "
                          "its figures would measure itself and are not reported", file=sys.stderr)
                out.write_text(json.dumps({"run_id": run_id, "machine": {"cpus": os.cpu_count(),
                                           "python": sys.version.split()[0]}, "args": vars(args),
                                           "runs": rows}, indent=2))
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else {"run_id": run_id, "runs": rows}))
    else:
        print(table(rows))
        print(f"results: {out}")
    return REFUSED_EXIT if any("refused" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
