"""Control-plane scale benchmark: simulated agents heartbeating and long-polling one instance.

Each simulated agent (asyncio + httpx, no WireGuard) heartbeats every
--interval seconds and keeps a netmap long-poll open. Agents are spread over
--clients processes so the load generator is not the bottleneck. For each
store and size it reports heartbeat latency p50/p99, the time for one
membership change to reach every watcher, and the server's CPU and RSS.
Results go to bench/results/control_scale-<timestamp>.json and are printed.

    python bench/control_scale.py --sizes 1000 5000 10000 --stores sqlite postgres
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import ssl
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from httpx_sse import EventSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import enrol, pg  # a real PostgreSQL, as the tests use
from tests.control.servers import ControlProcess

RESULTS = Path(__file__).with_name("results")
STREAM = True  # --watch: stream (one open response per agent) or longpoll (a request per change)
TLS = ssl.create_default_context()  # shared: building one per client costs milliseconds each


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- load generator (child processes) ------------------------------------------

async def agent(url, node, interval, stop_at, beats, wakes, revision):
    # One client per agent, as real agents have: a shared pool of thousands of connections is
    # slow in httpcore and would measure the load generator, not the control plane.
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), verify=TLS) as client:
        await agent_loops(client, url, node, interval, stop_at, beats, wakes, revision)


async def agent_loops(client, url, node, interval, stop_at, beats, wakes, revision):
    auth = {"Authorization": f"Bearer {node['node_token']}"}
    await asyncio.sleep(random.uniform(0, interval))

    async def heartbeat_loop():
        while time.time() < stop_at:
            started = time.perf_counter()
            try:
                answer = await client.post(f"{url}/v1/nodes/{node['node_id']}/heartbeat", json={}, headers=auth)
                if answer.status_code == 200:
                    beats.append(time.perf_counter() - started)
            except httpx.HTTPError:
                pass
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))

    async def watch_loop():
        nonlocal revision
        while time.time() < stop_at:
            try:
                if STREAM:
                    params = {"since": revision, "stream": 1}
                    async with client.stream("GET", f"{url}/v1/netmap", params=params, headers=auth) as answer:
                        async for event in EventSource(answer).aiter_sse():
                            revision = json.loads(event.data)["revision"]
                            wakes.append((node["node_id"], revision, time.time()))
                            if time.time() >= stop_at:
                                return
                    continue
                answer = await client.get(f"{url}/v1/netmap", params={"since": revision, "wait": 30}, headers=auth)
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
                continue
            if answer.status_code == 200:
                revision = answer.json()["revision"]
                wakes.append((node["node_id"], revision, time.time()))

    await asyncio.gather(heartbeat_loop(), watch_loop())


async def run_agents(url, nodes, interval, stop_at, revision):
    beats, wakes = [], []
    await asyncio.gather(*[agent(url, n, interval, stop_at, beats, wakes, revision) for n in nodes],
                         return_exceptions=True)
    return beats, wakes


def child(url, nodes, interval, stop_at, revision, queue, stream):
    global STREAM
    STREAM = stream
    beats, wakes = asyncio.run(run_agents(url, nodes, interval, stop_at, revision))
    queue.put((beats, wakes))


# -- orchestration ------------------------------------------------------------

async def register(url: str, token: str, count: int, start: int) -> list[dict]:
    semaphore = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=60) as client:
        async def one(i):
            async with semaphore:
                answer = await enrol.register(client, url, token, f"sim{i}")
                answer.raise_for_status()
                return answer.json()
        return await asyncio.gather(*[one(i) for i in range(start, start + count)])


def server_histograms(control: ControlProcess) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of the server's wake and heartbeat-latency histograms."""
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f"{control.url}/metrics", timeout=60).text
    found = {"wake": {}, "heartbeat": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            if family.name == "meshvpn_control_longpoll_wake_seconds":
                found["wake"][float(sample.labels["le"])] = sample.value
            elif (family.name == "meshvpn_control_request_seconds"
                  and sample.labels.get("route") == "/v1/nodes/{node_id}/heartbeat"):
                found["heartbeat"][float(sample.labels["le"])] = sample.value
    return found


def bucket_quantile(counts: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile q of cumulative histogram counts."""
    total = counts.get(float("inf"), 0)
    for le in sorted(counts):
        if total and counts[le] >= q * total:
            return le
    return float("nan")


def server_usage(control: ControlProcess) -> list[psutil.Process]:
    root = psutil.Process(control.proc.pid)
    return [root, *root.children(recursive=True)]


def measure(control, nodes, args, token) -> dict:
    duration = args.warmup + args.changes * args.change_gap + 3
    stop_at = time.time() + duration
    # Agents resume from a cached netmap at the current revision, as a restarted agent does:
    # the first full map is O(N) per node, O(N^2) for the mesh, and not what this measures.
    revision = httpx.get(f"{control.url}/v1/nodes", headers=control.admin, timeout=60).json()["revision"]
    queue = mp.Queue()
    shares = [nodes[i::args.clients] for i in range(args.clients)]
    children = [mp.Process(target=child, args=(control.url, share, args.interval, stop_at, revision, queue,
                                                        args.watch == "stream")) for share in shares]
    for proc in children:
        proc.start()
    processes = server_usage(control)
    hist_before = server_histograms(control)
    clients = [psutil.Process(proc.pid) for proc in children]
    time.sleep(args.warmup)
    cpu_before = sum(sum(p.cpu_times()[:2]) for p in processes)
    client_before = sum(sum(p.cpu_times()[:2]) for p in clients)
    wall_before = time.time()
    changes = []
    with httpx.Client(timeout=60) as admin:
        for i in range(args.changes):
            started = time.time()  # the change counts from before its request: conservative
            joined = enrol.register_sync(control.url, token, f"change{len(nodes)}-{i}", client=admin).json()
            changes.append((joined["revision"], started))
            time.sleep(args.change_gap)
    cpu = (sum(sum(p.cpu_times()[:2]) for p in processes) - cpu_before) / (time.time() - wall_before)
    client_cpu = (sum(sum(p.cpu_times()[:2]) for p in clients) - client_before) / (time.time() - wall_before)
    rss = sum(p.memory_info().rss for p in processes)
    hist_after = server_histograms(control)
    woken = {le: hist_after["wake"].get(le, 0) - hist_before["wake"].get(le, 0) for le in hist_after["wake"]}
    total = woken.get(float("inf"), 0)
    served = {le: hist_after["heartbeat"].get(le, 0) - hist_before["heartbeat"].get(le, 0)
              for le in hist_after["heartbeat"]}
    beats, wakes = [], []
    for _ in children:
        b, w = queue.get()
        beats += b
        wakes += w
    for proc in children:
        proc.join()
    reach = []
    for revision, started in changes:
        first: dict[str, float] = {}  # each watcher's first answer at or past the revision
        for node_id, seen, at in wakes:
            if seen >= revision and at >= started:
                first[node_id] = min(first.get(node_id, at), at)
        woke = [at - started for at in first.values()]
        reach.append({"watchers_reached": len(woke), "p50_s": percentile(woke, 0.5), "max_s": percentile(woke, 1.0)})
    return {"heartbeats": len(beats), "heartbeat_p50_ms": percentile(beats, 0.5) * 1000,
            "heartbeat_p99_ms": percentile(beats, 0.99) * 1000, "changes": reach,
            "server_heartbeat_p50_le_ms": bucket_quantile(served, 0.5) * 1000,
            "server_heartbeat_p99_le_ms": bucket_quantile(served, 0.99) * 1000,
            "server_wakes": total, "server_wakes_within_100ms": woken.get(0.1, 0),
            "server_wakes_within_1s": woken.get(1.0, 0),
            "server_cpu_cores": round(cpu, 2), "load_generator_cpu_cores": round(client_cpu, 2),
            "server_rss_mb": round(rss / 2**20, 1)}


def run_store(store: str, args, pg_admin_url: str | None) -> list[dict]:
    db_url = pg.fresh_database(pg_admin_url) if store == "postgres" else None
    state = Path(tempfile.mkdtemp(prefix="meshvpn-bench-"))
    control = ControlProcess(state, db_url, workers=args.workers, heartbeat_interval=args.interval,
                             offline_after=max(60.0, args.interval * 3), cidr="100.64.0.0/10").start()
    rows = []
    try:
        token = control.join_token()
        nodes: list[dict] = []
        for size in args.sizes:
            started = time.monotonic()
            nodes += asyncio.run(register(control.url, token, size - len(nodes), len(nodes)))
            registered_in = time.monotonic() - started
            row = {"store": store, "nodes": size, "workers": args.workers, "watch": args.watch,
                   "interval_s": args.interval, "registration_s": round(registered_in, 1),
                   **measure(control, nodes, args, token)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        control.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval of the simulated agents")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--watch", choices=["stream", "longpoll"], default="stream",
                        help="how simulated agents watch the netmap")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--change-gap", type=float, default=4.0)
    args = parser.parse_args()
    rows = []
    with pg.server() as pg_admin_url:
        for store in args.stores:
            if store == "postgres" and pg_admin_url is None:
                print("skipping postgres: not installed", file=sys.stderr)
                continue
            rows += run_store(store, args, pg_admin_url)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"control_scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                               "args": vars(args), "rows": rows}, indent=2))
    print(f"\n{'store':9} {'nodes':>6} {'hb p50 ms':>9} {'hb p99 ms':>9} {'change->all s':>13} {'cpu':>5} "
          f"{'rss MB':>7}")
    for row in rows:
        worst = max((c["max_s"] for c in row["changes"]), default=float("nan"))
        print(f"{row['store']:9} {row['nodes']:>6} {row['heartbeat_p50_ms']:>9.1f} {row['heartbeat_p99_ms']:>9.1f} "
              f"{worst:>13.3f} {row['server_cpu_cores']:>5} {row['server_rss_mb']:>7}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
