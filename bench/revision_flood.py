"""How many revisions one node can cause, and what they cost every other node: before and after, in one run.

One control plane (SQLite, one worker) on loopback with `--watchers` netmap streams open (other
nodes, each counting the events it is sent), and one hostile node with a valid node token that
floods for `--seconds` each way:
- `reregister`: re-registers as fast as one client can, toggling its name (no proof needed);
- `addresses`: heartbeats as fast as one client can, alternating between two source addresses
  (the control plane trusts 127.0.0.1 as a proxy, and the node's requests name 203.0.113.5 and
  203.0.113.6 in X-Forwarded-For: header values only, nothing is sent to them).
Measured per flood: revisions it caused (per second), its answers (200 / 429), the netmap events
delivered to the watchers. Both control planes run in the same run on the same machine: the one
of git revision `--before` (taken with `git archive`, run from that tree: the repository is only
read) and the work tree's.

Then each agent's intake cost per revision at `--peers` peers, in this process (pure code, no
WireGuard): a netmap of that many peers and a stream of revisions each changing one peer's name,
folded and checked as the work tree's agent does it (entries checked once, remembered) and with
nothing remembered (every entry checked again each revision, as before): the CPU milliseconds per
revision and the revisions a second one core absorbs. What a pass on the interface costs at that
size is `agent_apply.py`'s; passes are at least 0.1 s apart however fast revisions come.

    python bench/revision_flood.py [--seconds 5] [--watchers 100] [--peers 1000] [--before REV] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.core import intake
from bench import record
from meshcommon.contract import keys
from meshcommon.contract.wire import FullNetmap, NodeView
from testbed.control_process import ControlProcess
from testbed.enrol import auth, new_key, register_sync
from testbed.revisions import export

V0_2_0 = "7d0dd0bac201f132a4a6ac51b6461866dacee130"  # release 0.2.0: before the hostile-input fixes


def control_of(source: Path | None, state_dir: Path) -> ControlProcess:
    """A control plane of the work tree, or (`source`) of an exported revision, run from that tree."""
    # The watchers never heartbeat: an offline threshold longer than the run keeps their going offline
    # out of the revisions counted.
    control = ControlProcess(state_dir, heartbeat_interval=2.0, offline_after=3600.0,
                             settings={"trusted_proxies": "127.0.0.1/32"})
    if source is not None:
        # The old tree's meshctl: its packages first (PYTHONPATH), not the work tree's (the current directory).
        entry = "import sys; sys.path.remove(''); from control.cli import main; sys.exit(main())"
        control.args = [sys.executable, "-c", entry, *control.args[1:]]
        control.env = {**control.env, "PYTHONPATH": str(source)}
    return control


class Watchers:
    """`count` netmap streams of enrolled nodes, counting the events each is sent."""

    def __init__(self, url: str, tokens: list[str]):
        self.url, self.tokens, self.events = url, tokens, 0
        self.tasks: list[asyncio.Task] = []

    async def _watch(self, client: httpx.AsyncClient, token: str) -> None:
        async with client.stream("GET", self.url + "/v1/netmap", params={"stream": "true"},
                                 headers=auth(token)) as answer:
            async for line in answer.aiter_lines():
                if line.startswith("event: netmap"):
                    self.events += 1

    async def __aenter__(self) -> Watchers:
        self.client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=len(self.tokens) + 10))
        self.tasks = [asyncio.create_task(self._watch(self.client, token)) for token in self.tokens]
        await asyncio.sleep(1.0)  # every stream open and past its first event
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()


def revision(control: ControlProcess) -> int:
    return httpx.get(control.url + "/v1/nodes", headers=control.admin, timeout=10).json()["revision"]


async def flood(control: ControlProcess, kind: str, node: dict, key: str, seconds: float,
                watchers: Watchers) -> dict:
    """One flood from the hostile node: what it caused."""
    first, seen_before, answers = revision(control), watchers.events, {}
    deadline = time.monotonic() + seconds
    sent = 0
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            if kind == "reregister":
                answer = await client.post(control.url + "/v1/register", headers=auth(node["node_token"]),
                                           json={"public_key": key, "name": f"flip{sent % 2}"})
            else:
                answer = await client.post(f"{control.url}/v1/nodes/{node['node_id']}/heartbeat", json={},
                                           headers={**auth(node["node_token"]),
                                                    "X-Forwarded-For": f"203.0.113.{5 + sent % 2}"})
            answers[str(answer.status_code)] = answers.get(str(answer.status_code), 0) + 1
            sent += 1
    await asyncio.sleep(1.5)  # the last revisions reach the watchers
    caused = revision(control) - first
    return {"requests": sent, "answers": answers, "revisions": caused,
            "revisions_per_s": round(caused / seconds, 1), "events_delivered": watchers.events - seen_before,
            "events_per_watcher": round((watchers.events - seen_before) / max(1, len(watchers.tokens)), 1)}


def control_side(source: Path | None, state_dir: Path, args) -> dict:
    control = control_of(source, state_dir).start()
    try:
        token = control.join_token()
        tokens = []
        for i in range(args.watchers):
            answer = register_sync(control.url, token, f"w{i}")
            answer.raise_for_status()
            tokens.append(answer.json()["node_token"])
        key = new_key()
        hostile_key_answer = register_sync(control.url, token, "flip", key=key)
        hostile_key_answer.raise_for_status()
        node = hostile_key_answer.json()

        async def both() -> dict:
            async with Watchers(control.url, tokens) as watchers:
                return {kind: await flood(control, kind, node, key, args.seconds, watchers)
                        for kind in ("reregister", "addresses")}
        return asyncio.run(both())
    finally:
        control.stop()


def peer(i: int) -> NodeView:
    key = keys.public_key_of(keys.new_private_key())
    return NodeView(f"p{i:05d}", f"peer{i}", f"100.64.{i // 250}.{i % 250 + 2}", key, f"192.0.2.{i % 250 + 1}:51820",
                    51820, True)


def agent_side(peers: int, revisions: int) -> dict:
    """Intake CPU milliseconds per revision at `peers` peers, remembering checked entries or not."""
    me = NodeView("me", "me", "100.64.255.1", keys.public_key_of(keys.new_private_key()), None, 51820, True)
    views = [peer(i) for i in range(peers)]
    entries = [msgspec.Raw(msgspec.json.encode(view)) for view in views]
    stream = [FullNetmap(1, "100.64.0.0/10", me, entries)]
    for n in range(2, revisions + 2):  # one peer toggling its name: one entry changes per revision
        flipped = msgspec.Raw(msgspec.json.encode(msgspec.structs.replace(views[0], name=f"peer0-{n % 2}")))
        stream.append(FullNetmap(n, "100.64.0.0/10", me, [flipped, *entries[1:]]))
    return {"work_tree": per_revision(stream, remember=True),
            "nothing_remembered": per_revision(stream, remember=False)}


def per_revision(stream: list, remember: bool) -> dict:
    received = None
    started = time.process_time()
    for answer in stream:
        if not remember and received is not None:
            received.checked.clear()
        received = intake.receive(received, answer)
        netmap = intake.netmap_of(received)
        assert len(netmap.peers) == len(answer.peers)
    spent = time.process_time() - started
    return {"cpu_ms_per_revision": round(1000 * spent / len(stream), 3),
            "revisions_per_core_second": round(len(stream) / spent, 1)}


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="revision-flood-") as tmp:
        tmp_path = Path(tmp)
        source = export(args.before, tmp_path / "before", "control", "meshcommon")
        before = control_side(source, tmp_path / "before-state", args)
        after = control_side(None, tmp_path / "after-state", args)
    agent = agent_side(args.peers, args.revisions)
    return {"bench": "revision_flood", "seconds": args.seconds, "watchers": args.watchers, "before": args.before,
            "cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "control": {"before": before, "after": after},
            "agent": {"peers": args.peers, "revisions": args.revisions, **agent}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--revisions", type=int, default=200)
    parser.add_argument("--before", default=V0_2_0, help="the git revision to compare the work tree with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    record.save("revision_flood", result, args.json)
    if not args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
