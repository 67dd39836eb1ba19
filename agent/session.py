"""The session with the control plane: enrol or re-register, heartbeat, and watch the netmap.

Owns the retry policy (one jittered exponential `Backoff`; an enrolled node waits at most a third
of its offline threshold, so an outage never makes it look offline once the control plane is back),
what the control plane's answers mean for this node (`Gone` with a node token: forget the identity;
`Gone` while heartbeating or watching: removed from the mesh, drop every peer and stop), and the
netmap as received: each answer folded in, validated by `intake`, persisted, and announced on
`changed`. The data plane never depends on the control plane being reachable: nothing is torn down
because it is silent. Must not touch the interface (the reconciler does).
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import msgspec

from agent.client import Gone, Refused, TemporaryError
from agent.core import intake
from agent.core.endpoints import advertisable
from agent.core.model import ControlStatus, Identity, Netmap
from agent.core.pacing import REFUSED_CAP, WATCH_CAP, heartbeat_timeout, retry_cap
from agent.core.settings import AgentSettings
from agent.netmap_cache import NetmapCache
from agent.statedir import StateDir
from meshcommon.contract.wire import HeartbeatAnswer, Registered
from meshcommon.plumbing.backoff import Backoff
from meshcommon.plumbing.events import emit


class ControlAPI(Protocol):
    """What the session needs of the control plane (`client.ControlClient` in production)."""

    @property
    def url(self) -> str: ...

    async def register(self, token: str, body: dict, private_key: str) -> Registered: ...

    async def heartbeat(self, node_id: str, token: str, body: dict,
                        timeout: float | None = None) -> HeartbeatAnswer: ...

    def watch(self, token: str, since: int | None) -> AsyncGenerator[intake.Answer, None]: ...


@dataclass
class Session:
    client: ControlAPI
    settings: AgentSettings
    state: StateDir
    private_key: str
    public_key: str
    heartbeat_body: Callable[[Netmap | None], Awaitable[dict]]  # what a heartbeat reports of this netmap
    find_endpoint: Callable[[str, int], str | None]  # blocking: run in a worker thread
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    jitter: Callable[[float, float], float] = random.uniform
    clock: Callable[[], float] = time.time
    identity: Identity | None = field(init=False)  # None until enrolled (node.json)
    control: ControlStatus = field(init=False, default_factory=ControlStatus)
    received: intake.Received | None = field(init=False, default=None)
    netmap: Netmap | None = field(init=False, default=None)
    changed: asyncio.Event = field(init=False, default_factory=asyncio.Event)  # set on each new netmap
    streaming_from: str | None = field(init=False, default=None)  # the control URL of the netmap stream
    moved: asyncio.Event = field(init=False, default_factory=asyncio.Event)  # heartbeats left that URL
    cache: NetmapCache = field(init=False)  # netmap.json, written at most once a second

    def __post_init__(self) -> None:
        self.identity = self.state.identity()
        self.cache = NetmapCache(self.state, lambda: self.received if self.identity is not None else None)

    @property
    def node_id(self) -> str | None:
        return self.identity.node_id if self.identity else None

    async def pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if the agent is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    # -- the netmap as received ----------------------------------------------

    def restore(self) -> None:
        """Take the cached netmap, so the mesh comes back even while the control plane is down."""
        cached = self.state.netmap()
        if cached is None or self.identity is None:
            return
        try:
            received = intake.from_cache(cached)
            netmap = intake.netmap_of(received)
        except intake.BadNetmap as exc:
            emit("netmap_cache_ignored", node=self.node_id, reason=str(exc))
            return
        self.received, self.netmap = received, netmap
        emit("netmap_restored", node=self.node_id, reason="cache", revision=netmap.revision, peers=len(netmap.peers))
        self.changed.set()

    def take(self, answer: intake.Answer) -> bool:
        """Fold one netmap answer into the map; persist it; wake the reconciler. False when the answer
        is refused: the map held stays, and the stream must start again from it (`_follow`)."""
        try:
            received = intake.receive(self.received, answer)
            netmap = intake.netmap_of(received)
        except intake.BadNetmap as exc:
            emit("netmap_rejected", node=self.node_id, reason=str(exc), revision=answer.revision)
            return False
        known = dict(self.netmap.rejected) if self.netmap else {}
        for node_id, reason in netmap.rejected:
            if known.get(node_id) != reason:  # logged once, not again with every revision
                emit("peer_rejected", node=self.node_id, peer=node_id, reason=reason, revision=netmap.revision)
        self.received, self.netmap = received, netmap
        self.cache.persist()
        self.changed.set()
        return True

    def _clear_peers(self) -> None:
        """Removed from the mesh: keep the interface, drop every peer (they dropped us)."""
        if self.received is not None:
            self.received = intake.without_peers(self.received)
            self.netmap = intake.netmap_of(self.received)
            self.changed.set()

    # -- the link to the control plane ------------------------------------------

    def _revision(self) -> int | None:
        return self.netmap.revision if self.netmap else None

    def _reachable(self) -> None:
        if not self.control.connected:
            emit("control_restored" if self.control.unreachable_since else "control_connected",
                 node=self.node_id, url=self.client.url, reason="request_succeeded", revision=self._revision())
        self.control = ControlStatus(True, self.client.url)

    def _unreachable(self, error: Exception) -> None:
        if self.control.connected or self.control.unreachable_since is None:
            emit("control_unreachable", node=self.node_id, reason=str(error), revision=self._revision())
            self.control = ControlStatus(False, self.client.url, self.clock(), str(error))
        else:
            self.control = replace(self.control, last_error=str(error))

    # -- the session ----------------------------------------------------------------

    async def run(self) -> None:
        """Register, then heartbeat and watch until stopped; register again after a failure."""
        retry = Backoff(self.jitter)
        while not self.stop.is_set():
            identity = await self.register()
            if identity is None:
                return
            failure = await first_failure(self._heartbeats(identity), self._watch(identity))
            if isinstance(failure, Gone):
                # Removed by an admin (or left): respect it. Drop every peer, keep the
                # interface, and do not re-enroll until the agent is started again.
                emit("node_removed", node=identity.node_id, reason=str(failure), revision=self._revision())
                self._forget_identity()
                self._clear_peers()
                await self.stop.wait()
                return
            if failure is not None:
                emit("session_failed", node=identity.node_id, reason=repr(failure), revision=self._revision())
                await self.pause(retry.next(retry_cap(self.identity)))

    async def register(self) -> Identity | None:
        """Make sure this node is enrolled and its record is current; retried until it is (None: stopped)."""
        retry = Backoff(self.jitter)
        while not self.stop.is_set():
            enrolled = self.identity is not None
            try:
                token = self.identity.node_token if self.identity else self._join_token()
                return self._registered(await self.client.register(token, await self._body(), self.private_key))
            except Gone as exc:
                if enrolled:  # the node token is no longer known: enrol anew with the join token
                    emit("node_identity_rejected", node=self.node_id, reason=str(exc))
                    self._forget_identity()
                    continue
                emit("registration_refused", node=self.settings.name, reason=str(exc))
                await self.pause(retry.next(REFUSED_CAP))
            except TemporaryError as exc:
                self._unreachable(exc)
                await self.pause(retry.next(retry_cap(self.identity)))
            except (Refused, OSError) as exc:
                emit("registration_refused", node=self.settings.name, reason=str(exc))
                await self.pause(retry.next(REFUSED_CAP))
        return None

    def _join_token(self) -> str:
        path = self.settings.join_token_file
        token = path.read_text().strip() if path else ""
        if not token:
            raise Refused("no node identity yet and no join token to enroll with")
        return token

    async def _body(self) -> dict:
        # Endpoint discovery uses blocking DNS and netlink: a worker thread, never the event loop's.
        endpoint = self.settings.endpoint or advertisable(await asyncio.to_thread(
            self.find_endpoint, self.client.url, self.settings.listen_port), self.netmap)
        return {"public_key": self.public_key, "name": self.settings.name,
                "listen_port": self.settings.listen_port, "endpoint": endpoint}

    def _registered(self, answer: Registered) -> Identity:
        if self.identity is None:
            emit("node_enrolled", node=answer.node_id, mesh_ip=answer.mesh_ip, reason="join_token",
                 revision=answer.revision)
        self._reachable()
        if self.identity and answer.node_id == self.identity.node_id and answer.mesh_ip != self.identity.mesh_ip:
            emit("mesh_ip_changed", node=answer.node_id, reason="control", revision=answer.revision)
        self.identity = Identity(**msgspec.structs.asdict(answer), control_urls=list(self.settings.control_urls))
        self.state.save_identity(self.identity)
        return self.identity

    def _forget_identity(self) -> None:
        """The control plane no longer knows this node (removed by an admin): enroll anew."""
        self.identity = None
        self.cache.cancel()  # a map of a mesh this node is no longer in: never written
        self.state.forget_identity()

    async def _heartbeats(self, identity: Identity) -> None:
        retry = Backoff(self.jitter)
        while not self.stop.is_set():
            url = self.client.url
            try:
                answer = await self.client.heartbeat(identity.node_id, identity.node_token,
                                                     await self.heartbeat_body(self.netmap),
                                                     timeout=heartbeat_timeout(identity))
            except TemporaryError as exc:
                self._unreachable(exc)
                first = retry.attempt == 0
                delay = retry.next(retry_cap(self.identity))
                # The first failure that moved the client to another control URL is retried there at
                # once: the offline threshold leaves no time to wait (see heartbeat_timeout).
                await self.pause(0.0 if first and self.client.url != url else delay)
            except Refused as exc:
                emit("heartbeat_refused", node=identity.node_id, reason=str(exc))
                await self.pause(identity.heartbeat_interval)
            else:
                self._reachable()
                retry.reset()
                if self.streaming_from is not None and self.client.url != self.streaming_from:
                    self.moved.set()  # the heartbeats failed over: the stream follows them
                await self.pause(answer.heartbeat_interval)

    async def _watch(self, identity: Identity) -> None:
        retry = Backoff(self.jitter)
        while not self.stop.is_set():
            try:
                await self._follow_until_moved(identity, retry)
            except TemporaryError as exc:
                self._unreachable(exc)
            await self.pause(retry.next(WATCH_CAP))

    async def _follow_until_moved(self, identity: Identity, retry: Backoff) -> None:
        """Take the netmap stream's answers until it ends (its error is raised), or until the
        heartbeats failed over to another control URL: a stream from a control host that went silent
        would otherwise hold this node's netmap back until its read timeout, for tens of seconds."""
        self.moved.clear()
        stream = asyncio.ensure_future(self._follow(identity, retry))
        moved = asyncio.ensure_future(self.moved.wait())
        try:
            await asyncio.wait({stream, moved}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, moved):
                task.cancel()
            await asyncio.gather(stream, moved, return_exceptions=True)
        if not stream.cancelled():
            stream.result()

    async def _follow(self, identity: Identity, retry: Backoff) -> None:
        """Take the stream's answers. After one it refuses, the stream's next delta would continue a
        map this node does not hold: it ends the stream, and `_watch` starts it again from the map
        held after its backoff (which only an answer taken resets)."""
        self.streaming_from = self.client.url
        async with contextlib.aclosing(self.client.watch(identity.node_token, self._revision())) as answers:
            async for answer in answers:
                self._reachable()
                if not self.take(answer):
                    return
                retry.reset()


async def first_failure(*loops: Awaitable[None]) -> BaseException | None:
    """Run the loops until one ends; cancel the others. What ended it: Gone before any other
    exception, None if a loop just returned (the agent is stopping)."""
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    failures = [task.exception() for task in done if task.exception() is not None]
    return next((f for f in failures if isinstance(f, Gone)), failures[0] if failures else None)
