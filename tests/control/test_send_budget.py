"""control/live/send_budget.py: shares of the bytes in flight, in order, given back once."""
import asyncio

import pytest

from control.live.send_budget import SendBudget

pytestmark = pytest.mark.anyio


async def test_shares_are_granted_in_order_as_they_fit_and_one_larger_than_all_goes_alone():
    budget = SendBudget(100, 10.0)
    a = await budget.take(60)
    order = []

    async def take(name: str, size: int):
        share = await budget.take(size)
        order.append(name)
        return share

    b = asyncio.ensure_future(take("b", 50))
    c = asyncio.ensure_future(take("c", 10))  # would fit now, but comes after b: it waits
    await asyncio.sleep(0.01)
    assert order == [] and budget.waits == 2
    a.release()
    a.release()  # once only
    await asyncio.sleep(0.01)
    assert order == ["b", "c"] and budget.in_flight == 60
    (await b).release()
    (await c).release()
    huge = await budget.take(10_000)
    assert budget.in_flight == 100  # the whole budget, no more
    huge.release()
    assert budget.in_flight == 0


async def test_a_stream_cancelled_while_waiting_leaves_its_place_to_the_next():
    budget = SendBudget(100, 10.0)
    a = await budget.take(100)
    cancelled = asyncio.ensure_future(budget.take(50))
    later = asyncio.ensure_future(budget.take(50))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.sleep(0.01)
    a.release()
    share = await asyncio.wait_for(later, 1)
    assert budget.in_flight == 50
    share.release()
    assert budget.in_flight == 0


async def test_a_share_not_given_back_within_the_patience_is_given_back_for_it():
    budget = SendBudget(100, 0.05)
    await budget.take(100)
    async with asyncio.timeout(1):
        share = await budget.take(100)
    assert budget.slow == 1
    share.release()
    assert budget.in_flight == 0


async def test_a_share_is_taken_now_only_when_it_fits_and_nobody_waits():
    budget = SendBudget(100, 10.0)
    first = budget.take_now(80)
    assert first is not None and budget.in_flight == 80
    assert budget.take_now(30) is None and budget.in_flight == 80  # does not fit: nothing taken
    waiting = asyncio.ensure_future(budget.take(30))
    await asyncio.sleep(0.01)
    assert budget.take_now(10) is None and budget.in_flight == 80  # it would fit, but one waits before it
    first.release()
    (await waiting).release()
    assert budget.in_flight == 0
