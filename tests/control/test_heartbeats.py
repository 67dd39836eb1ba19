"""The heartbeat buffer: one write per batch; kept when the store is down, dropped when it refuses (no store)."""
import pytest

from control.live.heartbeats import HeartbeatBuffer
from control.rules.errors import Unavailable
from control.rules.records import HeartbeatReport, HeartbeatSent, ReportedDown, TunnelDown
from meshcommon.contract.wire import NodeView
from tests.control.support import FakeClock

pytestmark = pytest.mark.anyio


class Store:
    def __init__(self, fail: Exception | None = None):
        self.fail, self.batches = fail, []

    async def record(self, batch: dict[str, HeartbeatReport]) -> list[str]:
        if self.fail is not None:
            raise self.fail
        self.batches.append(batch)
        return []


async def test_heartbeats_are_written_as_one_batch_the_latest_per_node():
    store, clock = Store(), FakeClock(100.0)
    buffer = HeartbeatBuffer(store.record, clock, interval=0.25)
    buffer.add("a", HeartbeatReport(clock(), 1, None, None), urgent=False)
    clock.now += 1
    buffer.add("a", HeartbeatReport(clock(), 2, None, None), urgent=False)
    buffer.add("b", HeartbeatReport(clock(), None, None, None), urgent=False)
    await buffer.flush()
    assert store.batches == [{"a": HeartbeatReport(101.0, 2), "b": HeartbeatReport(101.0, None)}]
    assert buffer.pending == {}


async def test_a_batch_is_kept_while_the_store_is_down_without_overwriting_newer_beats():
    store, clock = Store(Unavailable("down")), FakeClock(100.0)
    buffer = HeartbeatBuffer(store.record, clock, interval=0.25)
    buffer.add("a", HeartbeatReport(clock(), 1, None, None), urgent=False)
    buffer.add("b", HeartbeatReport(clock(), 1, None, None), urgent=False)
    await buffer.flush()
    clock.now += 1
    buffer.add("a", HeartbeatReport(clock(), 2, None, None), urgent=False)
    await buffer.flush()
    assert buffer.pending == {"a": HeartbeatReport(101.0, 2), "b": HeartbeatReport(100.0, 1)}


async def test_a_batch_the_store_refuses_is_dropped():
    clock = FakeClock()
    buffer = HeartbeatBuffer(Store(ValueError("no")).record, clock, interval=0.25)
    buffer.add("a", HeartbeatReport(clock(), 2**70, None, None), urgent=True)
    await buffer.flush()
    assert buffer.pending == {}


async def test_a_flush_returns_only_once_a_flush_already_under_way_has_stored_its_batch():
    import asyncio
    stored: list[str] = []

    async def slow_record(batch: dict[str, HeartbeatReport]) -> list[str]:
        await asyncio.sleep(0.2)
        stored.extend(batch)
        return []

    clock = FakeClock(100.0)
    buffer = HeartbeatBuffer(slow_record, clock, interval=0.25)
    buffer.add("a", HeartbeatReport(clock(), 1, None, None), urgent=False)
    under_way = asyncio.create_task(buffer.flush())  # as the background flusher would
    await asyncio.sleep(0.05)  # it has taken the batch and is writing it
    await buffer.flush()
    assert stored == ["a"]
    await under_way


async def test_a_report_of_the_tunnels_down_survives_later_beats_that_report_no_change_and_a_store_outage():
    store, clock = Store(Unavailable("down")), FakeClock(100.0)
    buffer = HeartbeatBuffer(store.record, clock, interval=0.25)
    down = (TunnelDown("b", 90.0, "no_traffic"),)
    buffer.add("a", HeartbeatReport(clock(), 1, "198.51.100.7:51820", down), urgent=False)
    buffer.add("a", HeartbeatReport(clock(), 2, "198.51.100.7:51820", None), urgent=False)
    assert buffer.pending["a"].tunnels_down == down
    await buffer.flush()  # the store is down: kept
    buffer.add("a", HeartbeatReport(clock(), 3, None, None), urgent=False)
    store.fail = None
    await buffer.flush()
    assert store.batches == [{"a": HeartbeatReport(100.0, 3, None, down)}]


MEMBERS = {"a", "b", "c"}


def view(online: bool = True, reflexive: str | None = "198.51.100.7:51820") -> NodeView:
    return NodeView("a", "a", "100.64.0.2", "K" * 43 + "=", None, 51820, online, reflexive)


async def test_a_heartbeat_received_is_dated_here_and_given_its_reflexive_endpoint():
    store, clock = Store(), FakeClock(100.0)
    buffer = HeartbeatBuffer(store.record, clock, interval=0.25)
    buffer.receive("a", HeartbeatSent(3, "198.51.100.7", (ReportedDown("b", 10.0, "no_traffic"),)), view(), MEMBERS)
    down = (TunnelDown("b", 90.0, "no_traffic"),)  # reported 10 s down at 100.0
    assert buffer.pending == {"a": HeartbeatReport(100.0, 3, "198.51.100.7:51820", down)}
    assert not buffer._kick.is_set()  # online, same address: the next batch is soon enough
    buffer.receive("a", HeartbeatSent(3, "203.0.113.5", None), view(), MEMBERS)
    assert buffer.pending["a"].reflexive_endpoint == "203.0.113.5:51820" and buffer._kick.is_set()  # moved: now
    buffer._kick.clear()
    buffer.receive("a", HeartbeatSent(3, "198.51.100.7", None), view(online=False), MEMBERS)
    assert buffer._kick.is_set()  # an offline node's: written at once, so it comes back online


def test_a_report_of_tunnels_down_names_each_other_member_once_at_most():
    buffer = HeartbeatBuffer(Store().record, FakeClock(100.0), interval=0.25)
    flood = [ReportedDown("b", 5.0, "no_traffic"), ReportedDown("a", 1.0, "no_traffic"),  # itself
             *[ReportedDown(f"x{i}", 1.0, "no_traffic") for i in range(13_000)],  # no such nodes
             ReportedDown("c", 7.0, "no_handshake"), ReportedDown("b", 9.0, "stale_handshake")]  # b again
    buffer.receive("a", HeartbeatSent(3, None, tuple(flood)), view(), MEMBERS)
    assert buffer.pending["a"].tunnels_down == (TunnelDown("b", 95.0, "no_traffic"),
                                                 TunnelDown("c", 93.0, "no_handshake"))


def test_a_node_moving_in_runs_between_addresses_is_held_to_its_budget_of_moves():
    from control.live.heartbeats import MOVE_EVERY, MOVES_BURST
    clock = FakeClock(100.0)
    buffer = HeartbeatBuffer(Store().record, clock, interval=0.25, reflexive_hold=1.5)
    shown, moves = "198.51.100.7:51820", 0
    for beat in range(400):  # every 0.75 s, three heartbeats from each address in turn: 300 s
        clock.now += 0.75
        address = ("203.0.113.5", "203.0.113.6")[(beat // 3) % 2]
        buffer.receive("a", HeartbeatSent(1, address, None), view(reflexive=shown), MEMBERS)
        stored = buffer.pending.pop("a").reflexive_endpoint
        if stored != shown:
            shown, moves = stored, moves + 1  # the cache shows the move at once here
    assert moves <= MOVES_BURST + 300 / MOVE_EVERY + 1


def test_an_accepted_move_stands_until_the_cache_shows_it():
    clock = FakeClock(100.0)
    buffer = HeartbeatBuffer(Store().record, clock, interval=0.25, reflexive_hold=1.5)
    old = view(reflexive="198.51.100.7:51820")
    buffer.receive("a", HeartbeatSent(1, "203.0.113.5", None), old, MEMBERS)
    clock.now += 2
    buffer.receive("a", HeartbeatSent(1, "203.0.113.5", None), old, MEMBERS)
    assert buffer.pending["a"].reflexive_endpoint == "203.0.113.5:51820"
    for _ in range(3):  # the store is slow: the cache still shows the old address meanwhile
        clock.now += 2
        buffer.receive("a", HeartbeatSent(1, "203.0.113.5", None), old, MEMBERS)
        assert buffer.pending["a"].reflexive_endpoint == "203.0.113.5:51820"
