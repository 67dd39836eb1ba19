"""chat.transport over loopback: acknowledged delivery, refused strangers, junk, and every failure a reason."""
import asyncio
import contextlib

import pytest

from chat import protocol, transport
from testbed.pg import free_port

pytestmark = pytest.mark.anyio
LOOPBACK = "127.0.0.1"


@contextlib.asynccontextmanager
async def receiving(is_peer, received: list):
    async def on_message(peer_ip, message):
        received.append((peer_ip, message.text))

    server = await asyncio.start_server(transport.Receiver(is_peer, on_message).handle, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def message(text: str = "hello", message_id: str = "a1b2c3d4e5") -> protocol.Message:
    return protocol.Message(message_id, text, 1.0)


async def test_a_peer_gets_an_ack_once_its_message_is_stored():
    received: list = []
    async with receiving(lambda ip: True, received) as port:
        await transport.send(LOOPBACK, message(), port, timeout=2)
    assert received == [(LOOPBACK, "hello")]


async def test_a_connection_from_a_non_peer_is_closed_unheard(caplog):
    received: list = []
    async with receiving(lambda ip: False, received) as port:
        with pytest.raises(transport.SendFailed, match="connection failed"):
            await transport.send(LOOPBACK, message(), port, timeout=2)
    assert received == []
    assert [r.reason for r in caplog.records if r.getMessage() == "chat_refused"] == ["not a current peer"]


async def test_junk_closes_its_connection_only_and_the_receiver_keeps_serving(caplog):
    received: list = []
    async with receiving(lambda ip: True, received) as port:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"\xff" * 64 + b"GET / HTTP/1.1\r\n")  # a frame length far past MAX_FRAME
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, nothing answered
        writer.close()
        await transport.send(LOOPBACK, message("still there?"), port, timeout=2)
    assert received == [(LOOPBACK, "still there?")]
    assert any(r.getMessage() == "chat_connection_closed" for r in caplog.records)


async def test_nothing_listening_is_a_refusal_with_a_reason():
    with pytest.raises(transport.SendFailed) as failed:
        await transport.send(LOOPBACK, message(), free_port(), timeout=2)
    assert failed.value.reason == "refused: the peer's chat is not running"


async def test_an_ack_for_another_message_is_a_failure():
    async def ack_another(reader, writer):
        await transport.read_frame(reader, protocol.Message, 2)
        writer.write(protocol.encode(protocol.Ack("another-id")))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(ack_another, LOOPBACK, 0)
    try:
        with pytest.raises(transport.SendFailed, match="acknowledged another message"):
            await transport.send(LOOPBACK, message(), server.sockets[0].getsockname()[1], timeout=2)
    finally:
        server.close()


async def test_a_peer_over_its_rate_is_refused_and_logged_once(caplog):
    received: list = []
    async with receiving(lambda ip: True, received) as port:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        acked = 0
        try:
            for i in range(transport.MESSAGES_BURST + 10):
                writer.write(protocol.encode(message(f"flood {i}", f"m{i:09d}")))
                await writer.drain()
                await transport.read_frame(reader, protocol.Ack, 2)
                acked += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        with pytest.raises(transport.SendFailed):  # still over: refused again, not logged again
            await transport.send(LOOPBACK, message("again", "x0000000001"), port, timeout=2)
    assert acked == len(received) == transport.MESSAGES_BURST
    assert [r.reason for r in caplog.records if r.getMessage() == "chat_refused"] == ["more than 2 messages a second"]


async def test_a_peer_holds_a_few_connections_at_once():
    received: list = []
    async with receiving(lambda ip: True, received) as port:
        held = [await asyncio.open_connection(LOOPBACK, port) for _ in range(transport.CONNECTIONS_PER_PEER)]
        await asyncio.sleep(0.05)
        with pytest.raises(transport.SendFailed, match="connection failed"):
            await transport.send(LOOPBACK, message(), port, timeout=2)
        held[0][1].close()
        await asyncio.sleep(0.05)
        await transport.send(LOOPBACK, message(), port, timeout=2)  # a place is free again
        for _, writer in held[1:]:
            writer.close()
    assert received == [(LOOPBACK, "hello")]
