"""chat.daemon in-process: message states as the UI sees them, and the private pointer file.

Two daemons on loopback stand in for two nodes: the peer is 127.0.0.1 for both.
"""
from __future__ import annotations

import asyncio
import socket
import stat

import pytest

from chat.daemon import Chat, new_message_id, write_pointer
from chat.peers import Peer, View
from chat.store import Store
from testbed.pg import free_port

LOOPBACK = "127.0.0.1"


def daemon(state_dir, port: int, online: bool = True) -> Chat:
    chat = Chat(state_dir, Store(state_dir / "chat.db"), port)
    chat.view = View(LOOPBACK, state_dir.name, {LOOPBACK: Peer("other", LOOPBACK, online, configured=True)})
    return chat


def watch(chat: Chat) -> asyncio.Queue:
    queue: asyncio.Queue = asyncio.Queue()
    chat.subscribers.add(queue)
    return queue


def published(queue: asyncio.Queue) -> list[tuple[str, str]]:
    seen = []
    while not queue.empty():
        kind, data = queue.get_nowait()
        seen.append((kind, data.get("state")))
    return seen


@pytest.mark.anyio
async def test_a_message_is_delivered_stored_once_on_both_sides_and_every_step_published(tmp_path):
    port = free_port()
    sender, receiver = daemon(tmp_path / "a", port), daemon(tmp_path / "b", port)
    await receiver.listen(LOOPBACK)
    sent, arrived = watch(sender), watch(receiver)
    try:
        row = await sender.send(LOOPBACK, "hello")
        assert row["state"] == "delivered"
        assert published(sent) == [("message", "sending"), ("message", "delivered")]
        assert published(arrived) == [("message", "received")]
        assert await sender.retry(row["id"]) == row  # delivered already: not sent again
        assert [m["text"] for m in receiver.store.history(LOOPBACK)] == ["hello"]
    finally:
        await receiver.listen(None)


@pytest.mark.anyio
async def test_a_message_to_an_offline_peer_fails_with_the_reason_and_can_be_retried(tmp_path):
    chat = daemon(tmp_path, free_port(), online=False)
    row = await chat.send(LOOPBACK, "are you there?")
    assert (row["state"], row["reason"]) == ("failed", "peer offline")
    retried = await chat.retry(row["id"])
    assert (retried["id"], retried["state"]) == (row["id"], "failed")
    with pytest.raises(LookupError):
        await chat.retry(new_message_id())


@pytest.mark.anyio
async def test_a_message_to_a_non_peer_is_refused_before_anything_is_stored(tmp_path):
    chat = daemon(tmp_path, free_port())
    with pytest.raises(LookupError, match="not a peer"):
        await chat.send("100.64.0.250", "nobody")
    assert chat.store.history("100.64.0.250") == []


@pytest.mark.anyio
async def test_a_mesh_ip_it_cannot_listen_on_yet_is_tried_again_on_every_poll_until_it_works(tmp_path, caplog):
    """After a node's restart the agent reports its mesh IP before the address is on the interface:
    the first bind fails, and the chat must listen once it can, though the view has not changed."""
    port = free_port()
    chat = Chat(tmp_path, Store(tmp_path / "chat.db"), port)
    view = View(LOOPBACK, "me", {})
    states = watch(chat)
    taken = socket.create_server((LOOPBACK, port))  # the bind fails as long as this holds the port
    try:
        await chat.update(view)
        await chat.update(view)
        assert chat.server is None and chat.listening_on is None
    finally:
        taken.close()
    await chat.update(view)
    try:
        assert chat.listening_on == LOOPBACK
        with socket.create_connection((LOOPBACK, port), timeout=2):
            pass
        assert published(states) == [("state", None)]  # one view, published once
        failed = [r for r in caplog.records if r.getMessage() == "chat_listen_failed"]
        assert len(failed) == 1, "a failure is logged once per reason, not once per poll"
        assert [r for r in caplog.records if r.getMessage() == "chat_listening"]
    finally:
        await chat.listen(None)
    assert chat.listening_on is None


@pytest.mark.anyio
async def test_with_no_agent_answering_the_chat_keeps_listening_on_its_mesh_ip(tmp_path):
    port = free_port()
    chat = Chat(tmp_path, Store(tmp_path / "chat.db"), port)
    await chat.update(View(LOOPBACK, "me", {}))
    try:
        await chat.update(None)
        assert chat.listening_on == LOOPBACK and chat.state()["agent"] == "unreachable"
        with socket.create_connection((LOOPBACK, port), timeout=2):
            pass
    finally:
        await chat.listen(None)


def test_without_an_agent_the_state_says_so(tmp_path):
    chat = Chat(tmp_path, Store(tmp_path / "chat.db"))
    assert chat.state() == {"mesh_ip": None, "name": None, "peers": [], "agent": "unreachable"}


def test_the_pointer_file_is_private(tmp_path):
    write_pointer(tmp_path, "http://127.0.0.1:7080", "t0ken")
    assert stat.S_IMODE((tmp_path / "chat.json").stat().st_mode) == 0o600


def test_a_page_that_stops_reading_is_dropped_not_grown(tmp_path, caplog):
    chat = Chat(tmp_path, Store(tmp_path / "chat.db"))
    stalled, reading = asyncio.Queue(maxsize=3), asyncio.Queue(maxsize=3)
    chat.subscribers |= {stalled, reading}
    for i in range(5):
        chat.publish("message", {"n": i})
        while not reading.empty():
            reading.get_nowait()
    assert chat.subscribers == {reading} and stalled.qsize() == 3
    assert len([r for r in caplog.records if r.getMessage() == "chat_subscriber_dropped"]) == 1
