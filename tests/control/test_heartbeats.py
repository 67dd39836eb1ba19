"""The heartbeat buffer: one write per batch; kept when the store is down, dropped when it refuses (no store)."""
import pytest

from control.errors import Unavailable
from control.heartbeats import HeartbeatBuffer
from control.records import HeartbeatReport
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
    buffer.add("a", 1, (), urgent=False)
    clock.now += 1
    buffer.add("a", 2, (), urgent=False)
    buffer.add("b", None, (), urgent=False)
    await buffer.flush()
    assert store.batches == [{"a": HeartbeatReport(101.0, 2), "b": HeartbeatReport(101.0, None)}]
    assert buffer.pending == {}


async def test_a_batch_is_kept_while_the_store_is_down_without_overwriting_newer_beats():
    store, clock = Store(Unavailable("down")), FakeClock(100.0)
    buffer = HeartbeatBuffer(store.record, clock, interval=0.25)
    buffer.add("a", 1, (), urgent=False)
    buffer.add("b", 1, (), urgent=False)
    await buffer.flush()
    clock.now += 1
    buffer.add("a", 2, (), urgent=False)
    await buffer.flush()
    assert buffer.pending == {"a": HeartbeatReport(101.0, 2), "b": HeartbeatReport(100.0, 1)}


async def test_a_batch_the_store_refuses_is_dropped():
    buffer = HeartbeatBuffer(Store(ValueError("no")).record, FakeClock(), interval=0.25)
    buffer.add("a", 2**70, (), urgent=True)
    await buffer.flush()
    assert buffer.pending == {}


async def test_a_flush_returns_only_once_a_flush_already_under_way_has_stored_its_batch():
    import asyncio
    stored: list[str] = []

    async def slow_record(batch: dict[str, HeartbeatReport]) -> list[str]:
        await asyncio.sleep(0.2)
        stored.extend(batch)
        return []

    buffer = HeartbeatBuffer(slow_record, FakeClock(100.0), interval=0.25)
    buffer.add("a", 1, (), urgent=False)
    under_way = asyncio.create_task(buffer.flush())  # as the background flusher would
    await asyncio.sleep(0.05)  # it has taken the batch and is writing it
    await buffer.flush()
    assert stored == ["a"]
    await under_way
