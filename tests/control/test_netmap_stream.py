"""A netmap stream on a real server holds across its keepalives, read by the agent's own client."""
import asyncio

import httpx
import pytest

from agent.client import ControlClient, TemporaryError
from testbed import enrol
from testbed.control_process import ControlProcess

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
KEEPALIVE = 0.2


async def test_a_stream_holds_over_many_keepalives_and_still_delivers_changes(tmp_path):
    control = ControlProcess(tmp_path / "a", settings={"stream_keepalive": KEEPALIVE}).start()
    client = ControlClient([control.url])
    try:
        token = control.join_token(reusable=True)
        node = enrol.register_sync(control.url, token, "watcher").json()
        answers = []

        async def watch():
            async for answer in client.watch(node["node_token"], None):
                answers.append(answer)

        watching = asyncio.create_task(watch())
        await asyncio.sleep(15 * KEEPALIVE)  # fifteen keepalives with nothing to say
        assert not watching.done(), watching.exception() if watching.done() else None
        assert len(answers) == 1  # the first full map, and no reconnect since (that would send another)
        async with httpx.AsyncClient() as http:
            await enrol.register(http, control.url, token, "joiner")
        for _ in range(50):
            if len(answers) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(answers) == 2 and answers[1].revision > answers[0].revision
        watching.cancel()
        with pytest.raises((asyncio.CancelledError, TemporaryError)):
            await watching
    finally:
        await client.close()
        control.stop()
