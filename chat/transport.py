"""The TCP side of the daemon: receive on the mesh IP, send to a peer's mesh IP.

Owns the connections between chat daemons and their failures: `send` turns every way a
delivery can fail into a `SendFailed` with a reason a person can read. A connection from an
address that is not a current peer is refused; oversized, malformed or junk frames close the
connection with a log line and the daemon keeps serving. Frames are `chat.protocol`'s; what a
message means and where it is stored is not known here.
"""
from __future__ import annotations

import asyncio
import errno
import time

from chat import protocol
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


class Receiver:
    """Accepts messages from current peers only; `on_message(peer_ip, message)` stores them."""

    def __init__(self, is_peer, on_message):
        self.is_peer = is_peer
        self.on_message = on_message

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        try:
            if not self.is_peer(source):
                emit("chat_refused", peer=source, reason="not a current peer")
                return
            while True:
                try:
                    message = await read_frame(reader, protocol.Message, 30.0)
                except asyncio.IncompleteReadError:
                    return  # the sender closed: normal end
                await self.on_message(source, message)
                writer.write(protocol.encode(protocol.Ack(message.id)))
                await writer.drain()
        except (protocol.ProtocolError, TimeoutError, ConnectionError) as exc:
            emit("chat_connection_closed", peer=source, reason=str(exc) or type(exc).__name__)
        finally:
            writer.close()
