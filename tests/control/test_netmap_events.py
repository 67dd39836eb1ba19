"""The netmap stream's events (`resources.Netmap.events`) against a scripted feed: what is sent when."""
import asyncio

import msgspec
import pytest

from control.api.resources import STREAMS_HARD_CAP, STREAMS_PER_NODE
from control.api.resources import NetmapResource as Netmap
from control.live.membership import MembershipCache
from control.rules.records import Loaded
from meshcommon.contract.wire import NodeView

pytestmark = pytest.mark.anyio
KEEPALIVE = 0.3


def view(node_id: str) -> NodeView:
    return NodeView(node_id, node_id, "100.64.0.1", "A" * 43 + "=", None, 51820, True)


class ScriptedFeed:
    """A revision feed whose waits end as the test says: released by a change after `delay` seconds,
    or (revision None) at their timeout."""

    def __init__(self, cache: MembershipCache, script: list[tuple[float, int | None]]):
        self.cache = cache
        self.script = script  # (delay, revision to advance to), or (_, None): the wait times out
        self.timeouts: list[float] = []  # what each wait was allowed
        self.closed = False

    def woke_for(self) -> float:
        return 0.0

    async def wait_past(self, since: int, timeout: float) -> bool:
        self.timeouts.append(timeout)
        if not self.script:
            self.closed = True
            return False
        delay, revision = self.script.pop(0)
        if revision is None:
            await asyncio.sleep(timeout)
            return False
        await asyncio.sleep(delay)
        self.cache.apply(Loaded(revision, 0, [(revision, f"n{revision}")], {f"n{revision}": (view(f"n{revision}"),
                                                                                               f"h{revision}")}, False))
        return True


async def test_keepalives_keep_the_streams_phase_whatever_the_changes_in_between():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(Loaded(1, 0, [(1, "me")], {"me": (view("me"), "hme")}, True))
    feed = ScriptedFeed(cache, [(0.05, 2), (0.0, None)])  # a change 0.05 s in, then no change
    stream = Netmap(auth=None, feed=feed, cache=cache, keepalive=KEEPALIVE)
    sent = [event async for event in stream.events("me", 1)]
    assert [event and msgspec.json.decode(event.data)["revision"] for event in sent] == [2, None]
    first, after_change, after_keepalive = feed.timeouts
    assert first <= KEEPALIVE
    assert after_change <= KEEPALIVE - 0.05  # what was left of the same period, not a new one
    assert after_keepalive <= KEEPALIVE  # the next period follows on


async def test_a_new_stream_replaces_the_oldest_past_a_few_and_a_flood_of_them_is_refused():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(Loaded(1, 0, [(1, "me")], {"me": (view("me"), "hme")}, True))
    feed = ScriptedFeed(cache, [(0.2, 2)] * 20)  # every stream waits in the feed; the next change comes soon
    stream = Netmap(auth=None, feed=feed, cache=cache, keepalive=KEEPALIVE)
    streams = [stream.events("me", 1) for _ in range(STREAMS_HARD_CAP + 1)]
    first = [asyncio.ensure_future(events.__anext__()) for events in streams[:STREAMS_PER_NODE + 1]]
    await asyncio.sleep(0.05)  # five open: the fifth replaced the oldest, which ends at its next wake
    assert len(stream.streams["me"]) == STREAMS_PER_NODE + 1
    oldest = await first[0]
    assert oldest.event == "error" and b"replaced" in oldest.data
    for events in first[1:]:
        assert (await events).event == "netmap"  # the others go on
    more = [asyncio.ensure_future(events.__anext__()) for events in streams[STREAMS_PER_NODE + 1:-1]]
    await asyncio.sleep(0.05)
    refused = await streams[-1].__anext__()  # eight open at once: a ninth is refused outright
    assert refused.event == "error" and b"8 netmap streams" in refused.data
    for task in more:
        task.cancel()
    for events in streams:
        await events.aclose()
    assert stream.streams == {}
