"""The revision feed: waiters released by a new revision, a slice per turn of the loop, or by their timeout."""
import asyncio

import pytest

from control.live.membership import MembershipCache
from control.live.watch import RevisionFeed
from control.rules.records import Loaded
from meshcommon.contract.wire import NodeView

pytestmark = pytest.mark.anyio


def view(node_id: str) -> NodeView:
    return NodeView(node_id, node_id, "100.64.0.1", "A" * 43 + "=", None, 51820, True)


class Store:
    """What `load` reads: one node more at every revision."""

    def __init__(self):
        self.revision = 1

    async def load(self, since: int | None) -> Loaded:
        nodes = {f"n{self.revision}": (view(f"n{self.revision}"), f"h{self.revision}")}
        return Loaded(self.revision, 0, [(self.revision, f"n{self.revision}")], nodes, since is None)


async def feed_at_revision_1(wake_slice: int = 64) -> tuple[RevisionFeed, Store]:
    store = Store()
    feed = RevisionFeed(MembershipCache("100.64.0.0/24"), store.load, poll_interval=1.0, max_wait=60.0,
                        wake_slice=wake_slice)
    await feed.refresh()
    return feed, store


async def test_a_new_revision_releases_a_waiter_and_a_timeout_ends_it_unreleased():
    feed, store = await feed_at_revision_1()
    waiting = asyncio.create_task(feed.wait_past(1, 5.0))
    await asyncio.sleep(0)
    assert feed.waiters == 1
    store.revision = 2
    await feed.refresh()
    assert await waiting is True and feed.waiters == 0
    assert await feed.wait_past(2, 0.01) is False
    assert await feed.wait_past(1, 5.0) is True  # already past: no wait at all


async def test_waiters_that_time_out_are_forgotten_so_a_quiet_mesh_holds_nothing():
    feed, _ = await feed_at_revision_1()
    for _ in range(3):
        assert await asyncio.gather(*(feed.wait_past(1, 0.01) for _ in range(50))) == [False] * 50
    assert feed.waiters == 0


async def test_waiting_makes_no_task_of_its_own():
    feed, store = await feed_at_revision_1()
    before = len(asyncio.all_tasks())
    waiting = [asyncio.create_task(feed.wait_past(1, 5.0)) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert len(asyncio.all_tasks()) == before + 20 and feed.waiters == 20
    store.revision = 2
    await feed.refresh()
    assert await asyncio.gather(*waiting) == [True] * 20


async def test_a_release_wakes_a_slice_of_waiters_per_turn_of_the_loop():
    feed, store = await feed_at_revision_1(wake_slice=2)
    woken: list[int] = []

    async def wait(i: int) -> None:
        await feed.wait_past(1, 5.0)
        woken.append(i)

    waiting = [asyncio.create_task(wait(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    store.revision = 2
    await feed.refresh()
    seen = []
    for _ in range(3):
        await asyncio.sleep(0)  # one turn of the loop: other requests are served in between
        seen.append(len(woken))
    assert seen == [2, 4, 5] and woken == [0, 1, 2, 3, 4]  # in the order they came
    await asyncio.gather(*waiting)


async def test_closing_releases_every_waiter_unchanged():
    feed, _ = await feed_at_revision_1(wake_slice=3)
    waiting = [asyncio.create_task(feed.wait_past(1, 30.0)) for _ in range(7)]
    await asyncio.sleep(0.01)
    feed.close()
    assert await asyncio.gather(*waiting) == [False] * 7
    assert feed.closed and await feed.wait_past(1, 30.0) is False


class CountingStore(Store):
    """A store whose loads take a while, counted, and fail while `down`."""

    def __init__(self):
        super().__init__()
        self.loads = 0
        self.down = False

    async def load(self, since: int | None) -> Loaded:
        self.loads += 1
        loaded = await super().load(since)  # what the store held when the load began
        await asyncio.sleep(0.01)
        if self.down:
            raise ConnectionError("store down")
        return loaded


async def test_refreshes_that_come_during_a_load_share_the_next_one():
    store = CountingStore()
    feed = RevisionFeed(MembershipCache("100.64.0.0/24"), store.load, poll_interval=1.0, max_wait=60.0)
    first = asyncio.create_task(feed.refresh())
    await asyncio.sleep(0)  # the first load is under way
    store.revision = 2  # committed after it began: each caller below must see it
    await asyncio.gather(first, *(feed.refresh() for _ in range(50)))
    assert store.loads == 2 and feed.cache.revision == 2


async def test_a_refresh_waits_for_a_load_begun_after_it_was_asked_for():
    store = CountingStore()
    feed = RevisionFeed(MembershipCache("100.64.0.0/24"), store.load, poll_interval=1.0, max_wait=60.0)
    await feed.refresh()
    under_way = asyncio.create_task(feed.refresh())
    await asyncio.sleep(0)
    store.revision = 2
    await feed.refresh()
    await under_way
    assert feed.cache.revision == 2 and store.loads == 3


async def test_when_the_shared_load_fails_each_waiting_caller_loads_again_and_sees_its_own_error():
    store = CountingStore()
    feed = RevisionFeed(MembershipCache("100.64.0.0/24"), store.load, poll_interval=1.0, max_wait=60.0)
    store.down = True
    results = await asyncio.gather(*(feed.refresh() for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3 and store.loads == 3
    store.down = False
    await feed.refresh()
    assert feed.cache.revision == 1


def test_only_unannounced_writers_elsewhere_make_a_worker_poll_its_store_often():
    from control.live.runtime import ANNOUNCED_POLL_INTERVAL, revision_poll_interval

    assert revision_poll_interval(store_announces=False, workers=2, poll_interval=0.05) == 0.05
    # A lone SQLite worker makes every change itself and kicks its own feed; PostgreSQL announces.
    assert revision_poll_interval(store_announces=False, workers=1, poll_interval=0.05) == ANNOUNCED_POLL_INTERVAL
    assert revision_poll_interval(store_announces=True, workers=4, poll_interval=0.05) == ANNOUNCED_POLL_INTERVAL
