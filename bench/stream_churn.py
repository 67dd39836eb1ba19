"""Memory of a control plane whose agents keep dropping and reopening their netmap streams.

Agents reconnect when a read times out (a loaded network, a control host failing over): each
drop leaves a half-read TLS stream the server must forget. One control plane (one worker, SQLite)
with --nodes enrolled nodes; then, --steps times, every node opens its stream, reads its first
bytes and drops the connection, --rounds times over; the worker's RSS after each step. Run once
per event loop, with TLS (the default of a deployment) and without:

    python bench/stream_churn.py [--nodes 50] [--rounds 20] [--steps 6] [--json]

Found with it: uvloop's TLS transport keeps the memory of such streams (MagicStack/uvloop#565),
so `event_loop: auto` takes asyncio when TLS is on. A flat line is the goal, not a figure; the
machine's load is recorded beside it. Results: bench/results/stream_churn-<run id>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import record
from bench.control_scale import read_head, request
from testbed.certs import certificate
from testbed.control_process import ControlProcess
from testbed.enrol import register_sync


def worker_rss_mb(control: ControlProcess) -> float:
    assert control.proc is not None
    children = psutil.Process(control.proc.pid).children(recursive=True)
    return round(sum(child.memory_info().rss for child in children) / 2**20, 1)


async def churn(port: int, tokens: list[str], rounds: int, context: ssl.SSLContext | None) -> int:
    """Every node opens its stream, reads its first bytes and drops it, `rounds` times; the drops."""
    async def one(token: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        try:
            writer.write(request("GET", "/v1/netmap?since=0&stream=true", token))
            status, _ = await read_head(reader)
            assert status == 200, status
            await reader.read(100)
        finally:
            writer.close()
    for _ in range(rounds):
        await asyncio.gather(*(one(token) for token in tokens))
    return rounds * len(tokens)


def one_run(args, tls: bool, event_loop: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="stream-churn-") as tmp:
        directory = Path(tmp)
        pair = certificate(directory) if tls else None
        control = ControlProcess(directory / "state", heartbeat_interval=5, offline_after=3600, tls=pair,
                                 settings={"event_loop": event_loop}).start()
        try:
            client = httpx.Client(verify=control.verify, timeout=30)
            join = client.post(control.url + "/v1/join-tokens", json={"reusable": True}, headers=control.admin)
            join.raise_for_status()
            tokens = [register_sync(control.url, join.json()["token"], f"n{i}", client=client).json()["node_token"]
                      for i in range(args.nodes)]
            client.close()
            context = ssl.create_default_context(cafile=str(pair[0])) if pair else None
            series = [{"streams": 0, "rss_mb": worker_rss_mb(control)}]
            dropped = 0
            for _ in range(args.steps):
                dropped += asyncio.run(churn(control.port, tokens, args.rounds, context))
                time.sleep(1.0)
                series.append({"streams": dropped, "rss_mb": worker_rss_mb(control)})
        finally:
            control.stop()
    return {"tls": tls, "event_loop": event_loop, "series": series,
            "growth_mb": round(series[-1]["rss_mb"] - series[1]["rss_mb"], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--only", nargs="+", metavar="TLS:LOOP", help="e.g. tls:auto plain:uvloop (default: all six)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = [(tls == "tls", loop) for tls, _, loop in (only.partition(":") for only in args.only)] if args.only else \
        [(tls, loop) for tls in (True, False) for loop in ("asyncio", "uvloop", "auto")]
    runs = [one_run(args, tls, loop) for tls, loop in chosen]
    result = {"bench": "stream_churn", "nodes": args.nodes, "rounds": args.rounds, "steps": args.steps,
              "cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()], "runs": runs}
    record.save("stream_churn", result, args.json)
    if not args.json:
        for run in runs:
            line = " ".join(f"{point['rss_mb']:.0f}" for point in run["series"])
            print(f"{'tls' if run['tls'] else 'plain':5} {run['event_loop']:7} RSS MB after each step: {line}"
                  f"  (growth after the first step {run['growth_mb']} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
