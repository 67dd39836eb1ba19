"""The TCP side of the daemon: receive on the mesh IP, send to a peer's mesh IP.

Owns the connections between chat daemons and their failures: `send` turns every way a
delivery can fail into a `SendFailed` with a reason a person can read. A connection from an
address that is not a current peer is refused, and so is a peer past its share (a few
connections at a time, a conversation's rate of messages); oversized, malformed or junk frames
close the connection with a log line and the daemon keeps serving. Frames are `chat.protocol`'s; what a
message means and where it is stored is not known here.
"""
from __future__ import annotations

import asyncio
import errno
import time
from collections import Counter

from chat import protocol
from meshcommon.plumbing.budget import Budgets
from meshcommon.plumbing.events import emit

PORT = 7000
TIMEOUT = 5.0


class SendFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


async def read_frame(reader: asyncio.StreamReader, kind: type, timeout: float):
    header = await asyncio.wait_for(reader.readexactly(protocol.HEADER.size), timeout)
    body = await asyncio.wait_for(reader.readexactly(protocol.frame_length(header)), timeout)
    return protocol.decode(body, kind)


async def send(peer_ip: str, message: protocol.Message, port: int = PORT, timeout: float = TIMEOUT) -> None:
    """Deliver one message and wait for its acknowledgement, or raise SendFailed with a reason."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(peer_ip, port), timeout)
    except TimeoutError:
        raise SendFailed("timed out connecting") from None
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            raise SendFailed("unreachable: no route to the peer (it is not in the mesh now)") from None
        if exc.errno == errno.ECONNREFUSED:
            raise SendFailed("refused: the peer's chat is not running") from None
        raise SendFailed(f"unreachable: {exc.strerror or exc}") from None
    try:
        writer.write(protocol.encode(message))
        await writer.drain()
        ack = await read_frame(reader, protocol.Ack, max(0.5, timeout - (time.monotonic() - started)))
        if ack.ack != message.id:
            raise SendFailed("the peer acknowledged another message")
    except TimeoutError:
        raise SendFailed("timed out waiting for the acknowledgement") from None
    except (asyncio.IncompleteReadError, ConnectionError, protocol.ProtocolError) as exc:
        raise SendFailed(f"connection failed: {exc}") from None
    finally:
        writer.close()


CONNECTIONS_PER_PEER = 4  # open at once from one peer: a sender needs one at a time
MESSAGES_BURST, MESSAGES_PER_SECOND = 30, 2.0  # what one peer may send: a conversation, not a flood


class Receiver:
    """Accepts messages from current peers only, each peer with a few connections at a time and
    a bounded rate; `on_message(peer_ip, message)` stores them. A peer over its share is refused
    (its message unacknowledged, so its sender sees the failure), and logged once until it is
    within its share again."""

    def __init__(self, is_peer, on_message, clock=time.monotonic):
        self.is_peer = is_peer
        self.on_message = on_message
        self.clock = clock
        self.open: Counter[str] = Counter()
        self.rates = Budgets(MESSAGES_BURST, MESSAGES_PER_SECOND)
        self.refused: set[str] = set()  # peers over their share, logged already

    def _refuse(self, source: str, reason: str) -> None:
        if source not in self.refused:
            self.refused.add(source)
            emit("chat_refused", peer=source, reason=reason)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        self.open[source] += 1
        try:
            if not self.is_peer(source):
                emit("chat_refused", peer=source, reason="not a current peer")
                return
            if self.open[source] > CONNECTIONS_PER_PEER:
                self._refuse(source, f"more than {CONNECTIONS_PER_PEER} connections at once")
                return
            while True:
                try:
                    message = await read_frame(reader, protocol.Message, 30.0)
                except asyncio.IncompleteReadError:
                    return  # the sender closed: normal end
                now = self.clock()
                if not self.rates.take(source, now):
                    self._refuse(source, f"more than {MESSAGES_PER_SECOND:g} messages a second")
                    return
                if self.rates.level(source, now) >= MESSAGES_BURST / 2:  # within its share again
                    self.refused.discard(source)
                await self.on_message(source, message)
                writer.write(protocol.encode(protocol.Ack(message.id)))
                await writer.drain()
        except (protocol.ProtocolError, TimeoutError, ConnectionError) as exc:
            emit("chat_connection_closed", peer=source, reason=str(exc) or type(exc).__name__)
        finally:
            self.open[source] -= 1
            if not self.open[source]:
                del self.open[source]
            writer.close()
