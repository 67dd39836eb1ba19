"""What a burst of reconnections leaves in the memory of the HAProxy in front of the control plane,
with glibc's allocator and with jemalloc preloaded (as roles/meshvpn_control runs it).

A real control plane (plain HTTP on loopback, `trusted_proxies`) behind one HAProxy instance
(`testbed/tls_proxy.py`, the role's template, one thread). For each allocator, in turn, --rounds
times, a fresh HAProxy and:

1. `gradual`: --connections TLS connections opened 20 at a time, each sending one request and then
   held open (as an agent holds its stream); RSS 3 s later; all closed; RSS 3 s later;
2. `burst`: the same connections opened all at once (every agent reconnecting after a control plane
   restart); RSS 3 s later and again after --settle s with the connections still open; all closed;
   RSS 3 s later and again after --settle s.

The same connections are held in both, so what `burst` holds above `gradual` is what the burst
left behind. Both allocators run in the same invocation, alternating, so compare them within it.

    python bench/proxy_memory.py [--connections 3000] [--rounds 2] [--settle 20] [--json]

Results: bench/results/proxy_memory-<run id>.json. Needs haproxy and libjemalloc2
(scripts/install-system-packages) and a descriptor limit above twice --connections.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import ssl
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import record
from testbed import tls_proxy
from testbed.certs import certificate
from testbed.control_process import ControlProcess

OPEN_AT_ONCE = 20  # connections opening together in the gradual phase
QUIET = 3.0  # seconds after a phase before its RSS is read


def rss_mb(proxy: tls_proxy.HAProxy) -> float:
    assert proxy.proc is not None
    return round(psutil.Process(proxy.proc.pid).memory_info().rss / 2**20, 1)


async def connect(port: int, context: ssl.SSLContext) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(tls_proxy.ADDRESS, port, ssl=context)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    return writer


async def open_all(port: int, context: ssl.SSLContext, count: int, together: int) -> list[asyncio.StreamWriter]:
    gate = asyncio.Semaphore(together)

    async def one() -> asyncio.StreamWriter:
        async with gate:
            return await connect(port, context)
    return await asyncio.gather(*(one() for _ in range(count)))


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)


async def round_of(proxy: tls_proxy.HAProxy, context: ssl.SSLContext, args) -> dict:
    seen = {"started": rss_mb(proxy)}
    held = await open_all(proxy.port, context, args.connections, OPEN_AT_ONCE)
    await asyncio.sleep(QUIET)
    seen["gradual_open"] = rss_mb(proxy)
    await close_all(held)
    await asyncio.sleep(QUIET)
    seen["gradual_closed"] = rss_mb(proxy)
    held = await open_all(proxy.port, context, args.connections, args.connections)
    await asyncio.sleep(QUIET)
    seen["burst_open"] = rss_mb(proxy)
    await asyncio.sleep(args.settle)
    seen["burst_open_settled"] = rss_mb(proxy)
    await close_all(held)
    await asyncio.sleep(QUIET)
    seen["burst_closed"] = rss_mb(proxy)
    await asyncio.sleep(args.settle)
    seen["burst_closed_settled"] = rss_mb(proxy)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each allocator, alternating")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds for an allocator to give memory back")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not tls_proxy.available() or tls_proxy.JEMALLOC is None:
        print("proxy_memory: needs haproxy and libjemalloc2 (scripts/install-system-packages)", file=sys.stderr)
        return 2
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * args.connections + tls_proxy.FD_MARGIN:
        print(f"proxy_memory: a descriptor limit of {hard} is too low for {args.connections} connections",
              file=sys.stderr)
        return 2
    load = os.getloadavg()
    allocators = {"glibc": None, "jemalloc": tls_proxy.JEMALLOC}
    rounds: dict[str, list[dict]] = {name: [] for name in allocators}
    with tempfile.TemporaryDirectory(prefix="meshvpn-bench-proxy-memory-") as scratch:
        directory = Path(scratch)
        cert, key = certificate(directory)
        context = ssl.create_default_context(cafile=str(cert))
        control = ControlProcess(directory / "state", settings={"trusted_proxies": f"{tls_proxy.ADDRESS}/32"})
        control.start()
        try:
            for number in range(args.rounds):
                for name, allocator in allocators.items():
                    proxy = tls_proxy.HAProxy(directory, cert, key, control.port, maxconn=args.connections + 100,
                                              threads=1, name=f"haproxy-{name}-{number}")
                    proxy.start(allocator=allocator)
                    try:
                        rounds[name].append(asyncio.run(round_of(proxy, context, args)))
                    finally:
                        proxy.stop()
                    print(f"{name} round {number + 1}: {rounds[name][-1]}", file=sys.stderr)
        finally:
            control.stop()
    summary = {name: {phase: round(statistics.median(r[phase] for r in seen), 1) for phase in seen[0]}
               for name, seen in rounds.items()}
    result = {"bench": "proxy_memory", "connections": args.connections, "rounds": args.rounds,
              "settle_s": args.settle, "haproxy": tls_proxy.version(), "jemalloc": tls_proxy.JEMALLOC,
              "loadavg_before": load, "by_allocator": rounds, "median": summary,
              "burst_left_mb": {name: round(s["burst_open_settled"] - s["gradual_open"], 1)
                                for name, s in summary.items()}}
    record.save("proxy_memory", result, args.json)
    if not args.json:
        for name, s in summary.items():
            print(f"{name:9s} " + " ".join(f"{phase} {value}" for phase, value in s.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
