"""The netmap stream's events (`resources.Netmap.events`) against a scripted feed: what is sent when."""
import asyncio

import msgspec
import pytest

from control.api.resources import DRAINED, STREAM_PIECE, STREAMS_HARD_CAP, STREAMS_PER_NODE
from control.api.resources import NetmapResource as Netmap
from control.live.membership import MembershipCache
from control.live.send_budget import SendBudget
from control.rules.records import Loaded
from meshcommon.contract.wire import NodeView

pytestmark = pytest.mark.anyio
KEEPALIVE = 0.3


def view(node_id: str) -> NodeView:
    return NodeView(node_id, node_id, "100.64.0.1", "A" * 43 + "=", None, 51820, True)


def netmap(cache: MembershipCache, feed, budget: SendBudget | None = None) -> Netmap:
    return Netmap(auth=None, feed=feed, cache=cache, keepalive=KEEPALIVE,
                  budget=budget or SendBudget(1 << 20, 2.0))


def fields(event) -> tuple[str | None, bytes | None]:
    """(event name, data) of an event as written (None: a keepalive comment)."""
    if event is None:
        return None, None
    name = data = None
    for line in event.serialize(None).split(b"\n"):
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
    return name, data


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
    stream = netmap(cache, feed)
    sent = [event async for event in stream.events("me", 1)]
    assert [event and msgspec.json.decode(fields(event)[1])["revision"] for event in sent] == [2, None]
    first, after_change, after_keepalive = feed.timeouts
    assert first <= KEEPALIVE
    assert after_change <= KEEPALIVE - 0.05  # what was left of the same period, not a new one
    assert after_keepalive <= KEEPALIVE  # the next period follows on


async def test_a_new_stream_replaces_the_oldest_past_a_few_and_a_flood_of_them_is_refused():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(Loaded(1, 0, [(1, "me")], {"me": (view("me"), "hme")}, True))
    feed = ScriptedFeed(cache, [(0.2, 2)] * 20)  # every stream waits in the feed; the next change comes soon
    stream = netmap(cache, feed)
    streams = [stream.events("me", 1) for _ in range(STREAMS_HARD_CAP + 1)]
    first = [asyncio.ensure_future(events.__anext__()) for events in streams[:STREAMS_PER_NODE + 1]]
    await asyncio.sleep(0.05)  # five open: the fifth replaced the oldest, which ends at its next wake
    assert len(stream.streams["me"]) == STREAMS_PER_NODE + 1
    oldest = await first[0]
    assert fields(oldest)[0] == "error" and b"replaced" in fields(oldest)[1]
    for events in first[1:]:
        assert fields(await events)[0] == "netmap"  # the others go on
    more = [asyncio.ensure_future(events.__anext__()) for events in streams[STREAMS_PER_NODE + 1:-1]]
    await asyncio.sleep(0.05)
    refused = await streams[-1].__anext__()  # eight open at once: a ninth is refused outright
    assert fields(refused)[0] == "error" and b"8 netmap streams" in fields(refused)[1]
    for task in more:
        task.cancel()
    for events in streams:
        await events.aclose()
    assert stream.streams == {}


def crowd(count: int) -> Loaded:
    """A membership of `me` and `count` peers at revision 1: a full map of ~100 bytes a peer."""
    ids = ["me", *(f"p{i}" for i in range(count))]
    return Loaded(1, 0, [(1, node_id) for node_id in ids], {node_id: (view(node_id), f"h{node_id}") for node_id in ids},
                  True)


async def test_a_large_event_goes_in_pieces_that_wait_for_the_reader_then_gives_its_share_back():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(crowd(400))
    budget = SendBudget(1 << 20, 2.0)
    events = netmap(cache, ScriptedFeed(cache, []), budget).events("me", None)
    pieces = []
    async for event in events:
        if event is DRAINED:
            break
        pieces.append(event.serialize(None))
    assert len(pieces) > 2 and all(len(piece) <= STREAM_PIECE for piece in pieces)
    assert budget.in_flight > 40_000  # held while the last piece drains
    frame = b"".join(pieces)
    assert frame.startswith(b"event: netmap\nid: 1\ndata: ") and frame.endswith(b"\n\n")
    whole = msgspec.json.decode(frame.split(b"data: ", 1)[1])
    assert whole["revision"] == 1 and len(whole["peers"]) == 400
    with pytest.raises(StopAsyncIteration):  # resumed: drained; the scripted feed then closes
        await events.__anext__()
    assert budget.in_flight == 0


async def test_streams_past_the_budget_wait_their_turn_and_then_send_one_merged_delta():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(crowd(400))
    budget = SendBudget(60_000, 5.0)  # room for one full map at a time
    first = netmap(cache, ScriptedFeed(cache, []), budget).events("me", None)
    second = netmap(cache, ScriptedFeed(cache, []), budget).events("p1", None)
    assert (await first.__anext__()) is not DRAINED  # its first piece: it holds the budget
    waiting = asyncio.ensure_future(second.__anext__())
    await asyncio.sleep(0.05)
    assert not waiting.done() and budget.waits == 1
    # Meanwhile the membership moves on: the waiting stream's event, built when its turn comes, has it.
    cache.apply(Loaded(2, 0, [(2, "late")], {"late": (view("late"), "hlate")}, False))
    async for event in first:
        if event is DRAINED:
            break
    with pytest.raises(StopAsyncIteration):
        await first.__anext__()  # drained: its share given back
    piece = (await waiting).serialize(None)
    assert piece.startswith(b"event: netmap\nid: 2\n")
    async for _ in second:
        pass
    assert budget.in_flight == 0


async def test_a_reader_that_does_not_drain_in_time_gives_its_share_back():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(crowd(400))
    budget = SendBudget(60_000, 0.1)
    stuck = netmap(cache, ScriptedFeed(cache, []), budget).events("me", None)
    await stuck.__anext__()  # a first piece, and then never read again
    assert budget.in_flight > 0
    other = netmap(cache, ScriptedFeed(cache, []), budget).events("p1", None)
    async with asyncio.timeout(2):
        piece = await other.__anext__()  # its turn came at the patience's end
    assert piece.serialize(None).startswith(b"event: netmap")
    assert budget.slow == 1
    await stuck.aclose()
    await other.aclose()
