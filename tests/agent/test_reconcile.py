"""The reconcile pass with the system swapped out: what it writes, applies, reports and remembers."""
import asyncio
import logging
from dataclasses import replace

import pytest

from agent import reconcile
from agent.apply import Writes
from agent.core import endpoints as paths
from agent.core.desired import desired_state
from agent.core.model import Applied, Failure, Observed, PeerStats, Step, StepKind
from agent.reconcile import Reconciler
from agent.statedir import StateDir
from tests.agent.data import entry, netmap

NETMAP = netmap({"a": entry("a", "100.64.0.2")}, revision=6)
DESIRED = desired_state(NETMAP, "mesh0", 51820)
CONVERGED = Observed(True, True, frozenset({DESIRED.address}), 51820, DESIRED.peers, DESIRED.routes)


class System:
    """observe() and apply() as the pass calls them."""

    def __init__(self, observed: Observed, applied: Applied):
        self.observed, self.applied, self.plans = observed, applied, []

    def observe(self, interface: str) -> Observed:
        assert interface == "mesh0"
        return self.observed

    def apply(self, plan, desired, *, backend, private_key, wg_log, writes) -> Applied:
        self.plans.append((plan, desired, backend))
        writes.wireguard += 1  # what a real apply counts is its own test's
        return self.applied


@pytest.fixture(autouse=True)
def nudged(monkeypatch) -> list[str]:
    """The mesh IPs a pass nudges: recorded, never sent (a unit test sends nothing anywhere)."""
    sent: list[str] = []
    monkeypatch.setattr(reconcile, "nudge", sent.extend)
    return sent


@pytest.fixture
def system(monkeypatch):
    def install(observed: Observed, applied: Applied | None = None) -> System:
        made = System(observed, applied or Applied())
        monkeypatch.setattr(reconcile, "observe", made.observe)
        monkeypatch.setattr(reconcile, "apply", made.apply)
        return made
    return install


def reconciler(tmp_path) -> Reconciler:
    return Reconciler("mesh0", 51820, StateDir(tmp_path), "userspace", "PRIVATE")


def events(caplog, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name]


def test_a_converged_interface_gets_nothing_and_a_new_revision_is_announced_once(tmp_path, system, caplog):
    made = system(CONVERGED)
    passes = reconciler(tmp_path)
    assert passes.reconcile(NETMAP) == [] and passes.reconcile(NETMAP) == [] and made.plans == []
    assert passes.applied_revision == 6 and len(events(caplog, "apply_noop")) == 1
    assert "PrivateKey = PRIVATE" in passes.state.conf_path.read_text()


def test_a_pass_with_nothing_new_renders_nothing_and_writes_nothing(tmp_path, system, monkeypatch):
    made = system(CONVERGED)
    rendered = []
    monkeypatch.setattr(reconcile, "render", lambda *args: rendered.append(args) or "conf\n")
    passes = reconciler(tmp_path)
    for _ in range(3):
        assert passes.reconcile(NETMAP, announce_noop=False) == []
    assert len(rendered) == 1 and made.plans == [] and passes.writes == Writes()
    passes.reconcile(replace(NETMAP, revision=7))  # a revision that changes nothing on this node
    assert len(rendered) == 1 and passes.applied_revision == 7
    moved = netmap({"a": entry("a", "100.64.0.2", endpoint="192.0.2.9:51820")}, revision=8)
    passes.reconcile(moved)  # what this node wants changed: the file says so (and the pass writes)
    assert len(rendered) == 2


def test_a_flood_of_revisions_that_change_nothing_here_is_neither_rendered_nor_logged(tmp_path, system, caplog):
    system(CONVERGED)
    passes = reconciler(tmp_path)
    passes.reconcile(NETMAP)
    written = passes.state.conf_path.stat().st_mtime_ns
    for revision in range(7, 207):  # another node toggling its name: 200 revisions
        assert passes.reconcile(replace(NETMAP, revision=revision)) == []
    assert passes.applied_revision == 206 and len(events(caplog, "apply_noop")) == 1
    assert passes.state.conf_path.stat().st_mtime_ns == written


@pytest.mark.anyio
async def test_passes_are_spaced_while_netmaps_keep_coming_and_one_takes_them_all(tmp_path, system, monkeypatch):
    system(CONVERGED)
    passes = reconciler(tmp_path)
    seen: list[int] = []
    monkeypatch.setattr(passes, "reconcile", lambda netmap, announce: seen.append(netmap.revision) or [])
    current, wake = {"netmap": NETMAP}, asyncio.Event()
    task = asyncio.create_task(passes.run(lambda: current["netmap"], wake))
    for revision in range(7, 107):  # 100 revisions in about half a second
        current["netmap"] = replace(NETMAP, revision=revision)
        wake.set()
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.3)
    task.cancel()
    assert seen[-1] == 106, "the last netmap is reconciled"
    assert len(seen) <= 10, f"{len(seen)} passes for 100 revisions"


def test_a_quiet_recheck_announces_nothing(tmp_path, system, caplog):
    system(CONVERGED)
    passes = reconciler(tmp_path)
    assert passes.reconcile(NETMAP, announce_noop=False) == [] and passes.applied_revision == 6
    assert events(caplog, "apply_noop") == []


def test_changes_are_applied_and_each_logged_from_its_typed_change(tmp_path, system, caplog):
    done = (Step(StepKind.PEER_ADDED, DESIRED.peers[0].public_key), Step(StepKind.ROUTE_ADDED, "100.64.0.2/32"))
    made = system(Observed(True, True, frozenset({DESIRED.address}), 51820), Applied(done))
    passes = reconciler(tmp_path)
    found = passes.reconcile(NETMAP)
    [(_, desired, backend)] = made.plans
    assert desired == DESIRED and backend == "userspace"
    assert [c.kind.value for c in found] == ["peer_added", "route_added"] and passes.applied_revision == 6
    assert passes.writes.wireguard == 1, "the pass's writes are counted in the reconciler's own count"
    [added] = events(caplog, "peer_added")
    assert (added.peer, added.reason, added.revision, added.allowed_ips) == ("a", "online", 6, ["100.64.0.2/32"])
    assert events(caplog, "route_added")[0].target == "100.64.0.2/32"


def test_a_partial_failure_is_reported_and_the_revision_not_counted_as_reached(tmp_path, system, caplog):
    failed = (Failure(Step(StepKind.PEER_ADDED, DESIRED.peers[0].public_key), "netlink set: device busy"),)
    system(Observed(exists=False), Applied(failed=failed))
    passes = reconciler(tmp_path)
    [error] = passes.reconcile(NETMAP)
    assert error.kind.value == "apply_error" and passes.applied_revision is None
    assert events(caplog, "apply_error")[0].reason == "netlink set: device busy"


@pytest.mark.anyio
async def test_the_loop_passes_when_woken_and_survives_a_failing_pass(tmp_path, caplog, monkeypatch):
    calls = []

    def failing(self, current, triggered):
        calls.append((current.revision, triggered))
        raise RuntimeError("netlink went away")

    monkeypatch.setattr(Reconciler, "reconcile", failing)
    wake = asyncio.Event()
    task = asyncio.create_task(reconciler(tmp_path).run(lambda: NETMAP, wake))
    for _ in range(2):
        wake.set()
        async with asyncio.timeout(5):
            while wake.is_set() or len(calls) < 1:
                await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls[0] == (6, True) and len(events(caplog, "apply_failed")) == len(calls)


def test_a_roamed_endpoint_with_a_fresh_handshake_is_never_rewritten(tmp_path, system):
    peer = DESIRED.peers[0]
    roamed = replace(peer, endpoint="198.51.100.7:40001")  # learned by WireGuard, not in the netmap
    stats = (PeerStats(peer.public_key, "198.51.100.7:40001", 1_000_000 - 20, 500, 500),)
    made = system(replace(CONVERGED, peers=(roamed,), stats=stats))
    passes = replace(reconciler(tmp_path), clock=lambda: 1_000_000.0)
    assert passes.reconcile(NETMAP) == [] and made.plans == []
    assert "Endpoint" not in passes.state.conf_path.read_text()  # so no `wg syncconf` can undo it


def test_a_peer_without_a_handshake_is_tried_at_its_next_candidate_and_nudged(tmp_path, system, nudged):
    natted = netmap({"a": entry("a", "100.64.0.2", endpoint="192.168.1.2:51820",
                                reflexive_endpoint="198.51.100.7:51820")}, revision=7)
    key = natted.peers[0].public_key
    clock = [1_000_000.0]
    passes = replace(reconciler(tmp_path), clock=lambda: clock[0])
    first = desired_state(natted, "mesh0", 51820, {key: "198.51.100.7:51820"})
    stats = (PeerStats(key, "198.51.100.7:51820", 0, 0, 92),)
    system(Observed(True, True, frozenset({first.address}), 51820, first.peers, first.routes, stats))
    assert passes.reconcile(natted) == [] and nudged == ["100.64.0.2"]  # configured, no handshake: nudged
    clock[0] += paths.ATTEMPT
    made = system(Observed(True, True, frozenset({first.address}), 51820, first.peers, first.routes, stats))
    passes.reconcile(natted)
    [(plan, _, _)] = made.plans
    assert [new.endpoint for _, new in plan.peers_updated] == ["192.168.1.2:51820"]
    assert nudged == ["100.64.0.2"] * 2


@pytest.mark.anyio
async def test_a_new_revision_that_changes_nothing_on_this_node_costs_no_pass(tmp_path, system, monkeypatch):
    made = system(CONVERGED)
    passes = reconciler(tmp_path)
    reads: list[str] = []
    monkeypatch.setattr(reconcile, "observe", lambda interface: reads.append(interface) or made.observe(interface))
    current, wake = {"netmap": NETMAP}, asyncio.Event()
    task = asyncio.create_task(passes.run(lambda: current["netmap"], wake))
    wake.set()
    await asyncio.sleep(0.15)
    assert len(reads) == 1 and passes.applied_revision == 6
    for revision in range(7, 12):  # another node toggling its name, five times
        current["netmap"] = replace(NETMAP, revision=revision)
        wake.set()
        await asyncio.sleep(0.15)
    assert len(reads) == 1 and passes.applied_revision == 11  # reported as reached, nothing read
    current["netmap"] = netmap({"a": entry("a", "100.64.0.2", endpoint="192.0.2.9:51820")}, revision=12)
    wake.set()
    await asyncio.sleep(0.15)
    task.cancel()
    assert len(reads) == 2, "a change this node's map shows is a pass"
