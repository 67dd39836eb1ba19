"""chat.protocol: frames round-trip, and anything else is a ProtocolError (pure)."""
import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat import protocol

MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def test_frame_round_trip():
    message = protocol.Message("a1b2c3d4e5", "hello <script>", 1.5)
    frame = protocol.encode(message)
    assert protocol.frame_length(frame[:4]) == len(frame) - 4
    assert protocol.decode(frame[4:], protocol.Message) == message


def test_an_ack_round_trips():
    frame = protocol.encode(protocol.Ack("a1b2c3d4e5"))
    assert protocol.decode(frame[4:], protocol.Ack) == protocol.Ack("a1b2c3d4e5")


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
def test_junk_bytes_are_a_protocol_error_never_another_exception(junk):
    try:
        decoded = protocol.decode(junk, protocol.Message)
    except protocol.ProtocolError as exc:
        assert str(exc).startswith("malformed Message: ")
    else:  # not found in practice, but a valid frame made of random bytes would be a Message
        assert isinstance(decoded, protocol.Message)


VALID = {"id": st.from_regex(MESSAGE_ID, fullmatch=True), "text": st.text(min_size=1, max_size=4000),
         "sent_at": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2 ** 53), 2 ** 53)}
INVALID = {"id": st.text(max_size=70).filter(lambda t: not MESSAGE_ID.match(t)) | st.integers() | st.none(),
           "text": st.just("") | st.text(min_size=4001, max_size=4010) | st.integers() | st.none(),
           "sent_at": st.none() | st.text(max_size=8) | st.lists(st.integers(), max_size=2)}
KINDS = st.sampled_from(["valid", "valid", "valid", "invalid", "missing"])  # whole messages are common too


@given(st.data())
def test_a_message_decodes_exactly_when_every_field_is_there_and_valid_and_nothing_else(data):
    body, valid = {}, True
    for field in ("id", "text", "sent_at"):
        kind = data.draw(KINDS, label=field)
        if kind != "missing":
            body[field] = data.draw((VALID if kind == "valid" else INVALID)[field], label=f"{field} value")
        valid = valid and kind == "valid"
    if data.draw(st.booleans(), label="extra field"):
        body["from"] = "100.64.0.9"  # identity is the source address, never a field
        valid = False
    try:
        decoded = protocol.decode(msgspec.json.encode(body), protocol.Message)
    except protocol.ProtocolError:
        assert not valid, body
    else:
        assert valid and decoded == protocol.Message(body["id"], body["text"], body["sent_at"])


@given(st.binary(min_size=4, max_size=4))
def test_any_header_is_a_length_within_the_limit_or_a_protocol_error(header):
    try:
        length = protocol.frame_length(header)
    except protocol.ProtocolError:
        return
    assert 1 <= length <= protocol.MAX_FRAME
