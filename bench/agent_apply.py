"""Applying one change to a node with many peers: the agent's per-peer apply vs `wg syncconf` of the whole file.

One lab host (`testbed/lab.py`: its own network and mount namespaces) runs wireguard-go with
--peers peers, configured by the agent's own apply. Then, for --rounds rounds, each of three
changes (one peer added, that peer removed, one peer's endpoint changed) is made by both paths,
alternating which goes first each round:

- `uapi`: `agent.apply.apply` as the agent runs it on wireguard-go: one UAPI `set=1` request for
  the one peer (and the netlink change of its route);
- `syncconf`: the same `apply` down its kernel-backend path: `wg syncconf` of the whole rendered
  file (what the agent did for every change before; its route likewise over netlink).

Each timing covers the apply alone (the plan and the rendered file are ready). The agent's whole
pass on the new path is timed too (`pass`: observe over netlink and UAPI, diff, render of the
record file, apply). Peers have loopback endpoints and no keepalive, so wireguard-go sends nothing
(no handshake initiations as background noise, and no traffic outside the host). The machine is
shared: compare the two paths of one run (they alternate), not runs with each other.

    python bench/agent_apply.py [--peers 1000] [--rounds 15] [--json]

Results: bench/results/agent_apply-<run id>.json; --json prints the same object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import record  # noqa: E402  (after the repository is on the path)

INTERFACE = "mesh0"
CHANGES = ("add", "remove", "change")


def worker(peers: int, rounds: int, state_dir: str) -> dict:
    """In the lab host: configure `peers` peers, then time each change by both paths."""
    from agent.apply import Writes, apply
    from agent.core.desired import host_prefix
    from agent.core.diff import diff
    from agent.core.model import DesiredState, WgPeer
    from agent.core.render import render
    from agent.observe import observe
    from agent.statedir import StateDir
    from meshcommon.contract import keys

    state = StateDir(Path(state_dir))
    private = keys.new_private_key()
    writes = Writes()

    def peer(index: int, port: int = 20000) -> WgPeer:
        ip = f"100.64.{index // 250}.{index % 250 + 2}"
        return WgPeer(keys.public_key_of(keys.new_private_key()), (host_prefix(ip),), f"127.0.0.1:{port + index}", 0,
                      f"n{index}")

    def desired(of: list[WgPeer]) -> DesiredState:
        ordered = tuple(sorted(of, key=lambda p: p.public_key))
        return DesiredState(INTERFACE, "100.64.255.1/32", 51820, ordered,
                            frozenset(ip for p in ordered for ip in p.allowed_ips), keys.public_key_of(private))

    def run(path: str, target: DesiredState) -> float:
        """Apply the change to `target` by `path`; seconds the apply took."""
        plan = diff(observe(INTERFACE), target)
        state.save_conf(render(target, private, 1))
        started = time.perf_counter()
        result = apply(plan, target, backend="userspace" if path == "uapi" else "kernel", private_key=private,
                       conf_path=str(state.conf_path), wg_log=str(state.wg_log), writes=writes)
        took = time.perf_counter() - started
        assert not result.failed, result.failed
        assert diff(observe(INTERFACE), target).empty, "the change did not converge"
        return took

    def whole_pass(target: DesiredState) -> float:
        """The agent's pass on the new path: observe, diff, render and save the record, apply."""
        started = time.perf_counter()
        plan = diff(observe(INTERFACE), target)
        state.save_conf(render(target, private, 2))
        result = apply(plan, target, backend="userspace", private_key=private, conf_path=str(state.conf_path),
                       wg_log=str(state.wg_log), writes=writes)
        took = time.perf_counter() - started
        assert not result.failed, result.failed
        return took

    base = [peer(i) for i in range(peers)]
    started = time.perf_counter()
    initial = run("uapi", desired(base))
    setup = time.perf_counter() - started
    extra = peer(peers)
    moved = replace(base[0], endpoint="127.0.0.1:9")
    timings: dict[str, dict[str, list[float]]] = {path: {change: [] for change in CHANGES}
                                                  for path in ("uapi", "syncconf", "pass")}
    for round_ in range(rounds):
        for path in ("uapi", "syncconf") if round_ % 2 == 0 else ("syncconf", "uapi"):
            timings[path]["add"].append(run(path, desired([*base, extra])))
            timings[path]["remove"].append(run(path, desired(base)))
            timings[path]["change"].append(run(path, desired([moved, *base[1:]])))
            run(path, desired(base))  # back, untimed
        timings["pass"]["add"].append(whole_pass(desired([*base, extra])))
        timings["pass"]["remove"].append(whole_pass(desired(base)))
        timings["pass"]["change"].append(whole_pass(desired([moved, *base[1:]])))
        whole_pass(desired(base))
    return {"initial_apply_s": round(initial, 4), "initial_total_s": round(setup, 4),
            "peers_configured": len(observe(INTERFACE).peers), "timings": timings,
            "conf_bytes": state.conf_path.stat().st_size}


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def run_lab(args) -> dict:
    from testbed import lab as labs
    reason = labs.can_run()
    if reason:
        raise SystemExit(f"agent_apply: {reason}")
    with tempfile.TemporaryDirectory(prefix="agent-apply-") as tmp, labs.Lab() as lab:
        host = lab.add_host("n0")
        done = host.run(sys.executable, str(Path(__file__).resolve()), "--worker", "--peers", str(args.peers),
                        "--rounds", str(args.rounds), "--state-dir", tmp, check=False, timeout=540)
        if done.returncode != 0:
            raise SystemExit(f"agent_apply: the worker failed:\n{done.stdout}\n{done.stderr}")
        found = json.loads(done.stdout.splitlines()[-1])
    timings = found.pop("timings")
    summary = {}
    for change in CHANGES:
        uapi, syncconf, whole = (median_ms(timings[path][change]) for path in ("uapi", "syncconf", "pass"))
        summary[change] = {"uapi_ms": uapi, "syncconf_ms": syncconf,
                           "ratio_syncconf_to_uapi": round(syncconf / uapi, 1),
                           "uapi_max_ms": round(max(timings["uapi"][change]) * 1000, 2),
                           "agent_pass_ms": whole}
    return {"bench": "agent_apply", "peers": args.peers, "rounds": args.rounds, "cpu_count": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()], **found, "summary": summary,
            "timings_ms": {path: {change: [round(t * 1000, 3) for t in values] for change, values in changes.items()}
                           for path, changes in timings.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # inside the lab host
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.peers, args.rounds, args.state_dir)))
        return 0
    result = run_lab(args)
    record.save("agent_apply", result, args.json)
    if not args.json:
        print(f"{args.peers} peers: initial apply {result['initial_apply_s']} s")
        for change, figures in result["summary"].items():
            print(f"  {change:7} uapi {figures['uapi_ms']:8.2f} ms  syncconf {figures['syncconf_ms']:8.2f} ms  "
                  f"x{figures['ratio_syncconf_to_uapi']}  (agent pass {figures['agent_pass_ms']} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
