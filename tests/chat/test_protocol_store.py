"""meshchat's pure protocol and its store."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat import protocol
from chat.store import Store


def test_frame_round_trip():
    message = protocol.Message("a1b2c3d4e5", "hello <script>", 1.5)
    frame = protocol.encode(message)
    assert protocol.frame_length(frame[:4]) == len(frame) - 4
    assert protocol.decode(frame[4:], protocol.Message) == message


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"id":"short","text":"x","sent_at":1}',
                                  b'{"id":"a1b2c3d4e5","text":"","sent_at":1}',
                                  b'{"id":"a1b2c3d4e5","text":"x","sent_at":1,"from":"admin"}', b"\xff\xfe"])
def test_malformed_frames_are_protocol_errors(body):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(body, protocol.Message)


@pytest.mark.parametrize("length", [0, protocol.MAX_FRAME + 1, 2 ** 32 - 1])
def test_frame_lengths_outside_the_limit_are_refused(length):
    with pytest.raises(protocol.ProtocolError):
        protocol.frame_length(protocol.HEADER.pack(length))


def test_oversized_messages_cannot_be_encoded():
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(protocol.Message("a1b2c3d4e5", "x" * 4000 * 5, 1.0))


@given(st.binary(max_size=64))
def test_junk_never_escapes_as_anything_but_a_protocol_error(junk):
    try:
        protocol.decode(junk, protocol.Message)
    except protocol.ProtocolError:
        pass


def test_store_keeps_states_and_deduplicates_resends(tmp_path):
    store = Store(tmp_path / "chat.db")
    store.outgoing("m1aaaaaa", "100.64.0.2", "hi")
    assert store.mark("m1aaaaaa", "100.64.0.2", "failed", "peer offline")["reason"] == "peer offline"
    assert store.mark("m1aaaaaa", "100.64.0.2", "delivered")["state"] == "delivered"
    _, new = store.incoming("m2bbbbbb", "100.64.0.2", "yo")
    _, again = store.incoming("m2bbbbbb", "100.64.0.2", "yo")
    assert new and not again
    assert [m["text"] for m in store.history("100.64.0.2")] == ["hi", "yo"]
    store.outgoing("m3cccccc", "100.64.0.3", "pending")
    store.fail_unfinished()
    assert store.history("100.64.0.3")[0]["state"] == "failed"


@pytest.mark.anyio
async def test_connections_from_non_peers_are_refused_and_peers_get_acks():
    import asyncio

    from chat import wire
    received = []

    async def on_message(peer_ip, message):
        received.append((peer_ip, message.text))

    for allowed in (False, True):
        receiver = wire.Receiver(lambda ip: allowed, on_message)
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        message = protocol.Message(wire.new_id(), "hello", 1.0)
        if allowed:
            await wire.send("127.0.0.1", message, port, timeout=2)
        else:
            with pytest.raises(wire.SendFailed):
                await wire.send("127.0.0.1", message, port, timeout=2)
        server.close()
    assert received == [("127.0.0.1", "hello")]
