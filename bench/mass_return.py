"""A mass return: every node falls silent at once, then comes back within one heartbeat interval,
while every node holds its netmap stream open. What it costs the control plane, before and after.

The control plane runs as `meshctl serve` (gunicorn + uvicorn workers) on SQLite; the nodes are
simulated by the light load generator of bench/control_scale.py (raw asyncio, several processes),
each node heartbeating from its enrolment and holding one stream. A share of the streams
(--idle-readers) is opened and then never read again: a hostile or wedged agent.

One run, per code (the work tree, and --before, a git revision exported and run from its tree):
1. enrolment of --nodes nodes, every stream opened at the current revision;
2. steady state for --steady s: the server's RSS (gunicorn master and workers, every 0.2 s);
3. for each blip of --blips: every heartbeat stops (the streams stay open) for
   - `short`: the offline threshold plus two intervals (the control plane's own network failing:
     most nodes silent at once is held as a disruption, nobody is declared offline), or
   - `long`: past the disruption hold too (every node is declared offline, then comes back);
   then every node heartbeats again from a random moment within one interval. Measured: the
   server's peak RSS over the silence and the return against its steady peak, the kernel's TCP
   memory, heartbeat latency during the return, the revision once every node is online again
   and how long each reading stream took to hold it (from the return's start, and from when the
   last node's heartbeat was answered), and the `node_offline` lines logged.

    python bench/mass_return.py [--nodes 10000] [--idle-readers 0.5] [--blips short long] [--before REV] [--json]

Results: bench/results/mass_return-<run id>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.control_scale import (
    ENROL_CONCURRENCY,
    FD_SPARE,
    STREAMS_OPEN_LIMIT,
    Connection,
    Generator,
    Generators,
    Node,
    Server,
    connect,
    fd_limit,
    log_events,
    loop_factory,
    percentile,
    read_head,
    request,
    server_processes,
    server_rss,
    trust,
)
from testbed.control_process import ControlProcess
from testbed.revisions import export

RESULTS = Path(__file__).with_name("results")
SAMPLE_EVERY = 0.2  # seconds between memory samples
BACK_LIMIT = 120.0  # seconds for every node to be online again after a return


EVENT_HEAD = 256  # bytes kept of each event: its name, id and the start of its data, where the revision is
REVISION = re.compile(rb'data: \{"revision":(\d+)')


class ReturningGenerator(Generator):
    """Simulated nodes that can fall silent and come back; some of their streams are never read.

    A mass change makes every event about as large as a full map (2.5 MB at 10,000 nodes): each
    stream keeps only the head of the event it is reading, or 5,000 streams of a process would
    hold gigabytes and measure the generator instead of the server."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idle: set[int] = set()  # nodes whose stream is never read past its head
        self.held: list[asyncio.StreamWriter] = []

    async def stream(self, node: Node, opening: asyncio.Semaphore) -> None:
        if node.index not in self.idle:
            return await super().stream(node, opening)
        try:
            async with opening:
                reader, writer = await connect(self.port, node.conn.source)
                writer.write(request("GET", f"/v1/netmap?since={node.revision}&stream=true", node.token))
                status, _ = await read_head(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.errors[f"idle stream {type(exc).__name__}"] += 1
            return
        # Never read again, down to the socket: asyncio would otherwise keep reading into the
        # StreamReader's buffer (up to twice its limit) on the client's behalf.
        writer.transport.pause_reading()
        self.held.append(writer)
        self.streams_open += status == 200
        node.stream_back = time.monotonic()
        await asyncio.Event().wait()

    async def read_events(self, node: Node, reader: asyncio.StreamReader) -> None:
        buffer, left = b"", 0  # framing not consumed yet; data bytes left in the current chunk
        head, last = b"", b""  # the current event's first bytes, and its last byte so far
        while data := await reader.read(1 << 16):
            when = time.monotonic()
            buffer += data
            while buffer:
                if left == 0:  # a chunk's size line (or the CRLF that ended the previous chunk)
                    line = buffer.find(b"\r\n")
                    if line < 0:
                        break
                    if line == 0:
                        buffer = buffer[2:]
                        continue
                    left = int(buffer[:line].split(b";")[0], 16)
                    if left == 0:
                        return  # the last chunk: the server ended the stream
                    buffer = buffer[line + 2:]
                    continue
                piece, buffer = buffer[:left], buffer[left:]
                left -= len(piece)
                start = 0
                if last == b"\n" and piece.startswith(b"\n"):
                    self.on_head(node, head, when)
                    head, start = b"", 1
                while (end := piece.find(b"\n\n", start)) >= 0:
                    head += piece[start:end][:max(0, EVENT_HEAD - len(head))]
                    self.on_head(node, head, when)
                    head, start = b"", end + 2
                rest = piece[start:]
                head += rest[:max(0, EVENT_HEAD - len(head))]
                last = rest[-1:]

    def on_head(self, node: Node, head: bytes, when: float) -> None:
        if head.startswith(b":") or not head:
            return  # a keepalive comment
        if head.startswith(b"event: error"):
            self.errors["stream error event"] += 1
            return
        found = REVISION.search(head)
        if found:
            revision = int(found.group(1))
            node.revision = max(node.revision, revision)
            node.events.append((revision, when))

    async def heartbeat(self, node: Node) -> bool:
        ok = await super().heartbeat(node)
        if ok and node.beat_back is None:
            node.beat_back = time.monotonic()
        return ok

    async def watch(self, argument: dict) -> dict:
        share = argument["idle_readers"]
        self.idle = {node.index for node in self.nodes if random.Random(node.index).random() < share}
        return await super().watch(argument)

    async def silence(self, argument: None) -> None:
        await self.stop_heartbeats()  # the streams stay open

    async def back(self, argument: dict) -> None:
        """Every node heartbeats again, from a random moment within `spread` seconds."""
        now = time.monotonic()
        for node in self.nodes:
            node.beat_back = None
            node.origin = now + random.uniform(0, argument["spread"])
        self.beats, self.lags = [], []
        self.heartbeat_tasks = [asyncio.create_task(self.heartbeats(node, cold=False)) for node in self.nodes
                                if node.token]

    async def reached(self, argument: dict) -> dict:
        """When each reading stream first held `revision` (None: not yet), and each node's first
        answered heartbeat after the return."""
        revision = argument["revision"]
        reading = [node for node in self.nodes if node.token and node.index not in self.idle]
        return {"reached": [next((when for seen, when in node.events if seen >= revision), None) for node in reading],
                "beat_back": [node.beat_back for node in self.nodes if node.token]}


def returning_main(port: int, interval: float, indices: list[int], pipe, nice: int, cafile: str | None) -> None:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(ReturningGenerator(port, interval, indices, pipe).main())


class Sampler:
    """The server's RSS and the kernel's TCP memory every SAMPLE_EVERY seconds, by phase."""

    def __init__(self, processes: list[psutil.Process]):
        self.processes = processes
        self.samples: list[tuple[str, int, int]] = []  # (phase, server RSS, kernel TCP bytes)
        self.phase = "steady"
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while True:
            self.samples.append((self.phase, server_rss(self.processes), tcp_memory()))
            await asyncio.sleep(SAMPLE_EVERY)

    def peak(self, *phases: str, column: int = 1) -> int:
        return max((sample[column] for sample in self.samples if sample[0] in phases), default=0)


def tcp_memory() -> int:
    """Bytes the kernel holds in TCP socket buffers (all sockets of the machine)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * 4096
    return 0


UNANSWERED = (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError)  # an overloaded server: asked again


async def scrape(port: int) -> dict[str, float]:
    """Samples of the answering worker's /metrics, by name (and state for the node gauge); none
    when it did not answer in time."""
    try:
        body = (await Connection(port, "127.0.0.1").call(request("GET", "/metrics", "-")))[1]
    except UNANSWERED:
        return {}
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            key = sample.name + (f"{{{sample.labels['state']}}}" if "state" in sample.labels else "")
            found[key] = found.get(key, 0.0) + sample.value
    return found


async def revision_of(port: int) -> int:
    """The revision the server has now (asked until it answers)."""
    while True:
        with contextlib.suppress(*UNANSWERED):
            answer = await Connection(port, "127.0.0.1").call(request("GET", "/healthz", "-"))
            return json.loads(answer[1])["revision"]


def control_of(source: Path | None, state: Path, args, fds: int) -> ControlProcess:
    control = ControlProcess(state, workers=args.workers, heartbeat_interval=args.interval,
                             offline_after=args.interval * 3, cidr="100.64.0.0/10",
                             settings={"max_connections": fds - FD_SPARE})
    if source is not None:  # the old tree's meshctl: its packages first, not the work tree's
        entry = ("import sys; sys.path.remove('')\ntry: from control.cli.meshctl import main\n"
                 "except ImportError: from control.cli import main\nsys.exit(main())")
        control.args = [sys.executable, "-c", entry, *control.args[1:]]
        control.env = {**control.env, "PYTHONPATH": str(source)}
    return control


async def blip(server: Server, generators: Generators, sampler: Sampler, args, name: str, nodes: int) -> dict:
    offline_after = args.interval * 3
    silent_s = offline_after + 2 * args.interval + (10 * offline_after if name == "long" else 0.0)
    offset = server.control.log_path.stat().st_size
    sampler.phase = f"{name}-silence"
    await generators.tell("silence")
    await asyncio.sleep(silent_s)
    sampler.phase = f"{name}-return"
    back = time.monotonic()
    await generators.tell("back", {"spread": args.interval})
    deadline = back + BACK_LIMIT
    online = 0.0
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        online = (await scrape(server.port)).get("meshvpn_control_nodes{online}", 0.0)
        if online >= nodes:
            break
    await asyncio.sleep(2 * args.interval)  # the last flush, and its fan-out, under way
    final = await revision_of(server.port)
    await asyncio.sleep(args.settle)
    sampler.phase = "after"
    reports = await generators.tell("report", {"window": (back, back + BACK_LIMIT), "changes": []})
    answers = await generators.tell("reached", {"revision": final})
    reached = [when for answer in answers for when in answer["reached"]]
    beat_back = [when for answer in answers for when in answer["beat_back"] if when is not None]
    latencies = [latency for report in reports for latency in report["latencies"]]
    last_back = max(beat_back, default=back)
    arrived = [when for when in reached if when is not None]
    metrics = await scrape(server.port)
    steady = sampler.peak("steady")
    peak = sampler.peak(f"{name}-silence", f"{name}-return")
    return {
        "blip": name, "silent_s": round(silent_s, 1),
        "node_offline_lines": len(log_events(server.control.log_path, offset, "node_offline")),
        "online_after_return": int(online),
        "server_rss_peak_mb": round(peak / 2**20, 1),
        "server_rss_peak_over_steady": round(peak / steady, 3) if steady else None,
        "kernel_tcp_peak_mb": round(sampler.peak(f"{name}-silence", f"{name}-return", column=2) / 2**20, 1),
        "heartbeats_during_return": len(latencies),
        "heartbeats_failed": sum(report["failed"] for report in reports),
        "heartbeat_p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "heartbeat_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "final_revision": final,
        "reading_streams": len(reached), "streams_at_final": len(arrived),
        "streams_final_p50_s_after_return": round(percentile([w - back for w in arrived], 0.5), 2) if arrived else None,
        "streams_final_max_s_after_return": round(max(arrived) - back, 2) if arrived else None,
        "streams_final_max_s_after_last_node": round(max(arrived) - last_back, 2) if arrived else None,
        "one_worker_budget_waits": metrics.get("meshvpn_control_stream_budget_waits_total"),
        "one_worker_budget_slow": metrics.get("meshvpn_control_stream_budget_slow_total"),
        "stream_drops": sum(report["stream_drops"] for report in reports),
        "errors": {key: value for report in reports for key, value in report["errors"].items()},
    }


async def measure(server: Server, args, fds: int) -> dict:
    control = server.control
    join_token = await asyncio.to_thread(control.join_token, True)
    generators = Generators(args.generators, args.nodes, server.port, args.interval, 0, None, target=returning_main)
    sampler = Sampler(server_processes(server))
    try:
        started = time.monotonic()
        replies = await generators.tell("enrol", {"join_token": join_token,
                                                  "concurrency": max(1, ENROL_CONCURRENCY // args.generators)})
        if failed := sum(reply["failed"] for reply in replies):
            raise RuntimeError(f"{failed} nodes could not enrol")
        enrolled_s = time.monotonic() - started
        replies = await generators.tell("watch", {"revision": await revision_of(server.port),
                                                  "limit": STREAMS_OPEN_LIMIT, "streams": True,
                                                  "idle_readers": args.idle_readers})
        opened = sum(reply["open"] for reply in replies)
        sampler.task = asyncio.create_task(sampler.run())
        await asyncio.sleep(args.steady)
        row = {"nodes": args.nodes, "workers": args.workers, "interval_s": args.interval,
               "offline_after_s": args.interval * 3, "idle_readers": args.idle_readers,
               "enrol_s": round(enrolled_s, 1), "streams_opened": opened,
               "server_rss_steady_mb": round(sampler.peak("steady") / 2**20, 1),
               "kernel_tcp_steady_mb": round(sampler.peak("steady", column=2) / 2**20, 1), "blips": []}
        for name in args.blips:
            row["blips"].append(await blip(server, generators, sampler, args, name, args.nodes))
        await generators.tell("stop")
        return row
    finally:
        if sampler.task is not None:
            sampler.task.cancel()
        generators.kill()


def run(source: Path | None, args, fds: int) -> dict:
    state = Path(tempfile.mkdtemp(prefix="meshvpn-mass-return-"))
    trust(None)
    control = control_of(source, state, args, fds).start()
    try:
        return asyncio.run(measure(Server(control), args, fds))
    finally:
        control.stop()
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--idle-readers", type=float, default=0.0, help="share of the streams never read")
    parser.add_argument("--blips", nargs="+", choices=("short", "long"), default=["short", "long"])
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval of the simulated nodes")
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady state measured first")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the final revision before asking")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generators", type=int, default=4)
    parser.add_argument("--before", default=None, help="a git revision to run first, from its own tree")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    fds = fd_limit()
    run_id = time.strftime("%Y%m%dT%H%M%S")
    result: dict = {"bench": "mass_return", "run_id": run_id, "before": args.before, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            source = export(args.before, Path(tmp) / "before", "control", "meshcommon")
            result["runs"]["before"] = run(source, args, fds)
        result["runs"]["after"] = run(None, args, fds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"mass_return-{run_id}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
