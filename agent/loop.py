"""The agent: register, heartbeat, watch the netmap and reconcile WireGuard and routes.

Owns the reconcile loop (fetch -> desired -> render -> observe -> diff -> apply)
and the session with the control plane. The data plane never depends on the
control plane being reachable: the last good netmap is persisted and applied
on start, and nothing is torn down because the control plane is silent.
"""
from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pyroute2 import IPRoute

from agent import apply as applier
from agent import netmap as netmaps
from agent import wg
from agent.client import ControlClient, Gone, Refused, TemporaryError
from agent.desired import desired_state
from agent.diff import plan as make_plan
from agent.model import Netmap
from agent.observe import observe
from agent.render import render
from agent.state import StateDir
from meshcommon import keys
from meshcommon.events import emit
from meshcommon.files import atomic_write

RECHECK_INTERVAL = 10.0  # seconds between drift checks when nothing changed


@dataclass
class Settings:
    control_urls: list[str]
    join_token_file: Path | None
    name: str
    interface: str = "mesh0"
    state_dir: Path = Path("/var/lib/meshvpn")
    endpoint: str | None = None
    listen_port: int = 51820
    backend: str = "auto"
    ca: str | None = None


@dataclass
class ControlStatus:
    connected: bool = False
    url: str | None = None
    unreachable_since: float | None = None
    last_error: str | None = None


def advertised_endpoint(control_url: str, listen_port: int) -> str | None:
    """The source address the kernel would use toward the control plane, with our listen port."""
    host = urlsplit(control_url).hostname
    try:
        address = socket.getaddrinfo(host, None)[0][4][0]
        with IPRoute() as ipr:
            route = ipr.route("get", dst=address)[0]
        source = route.get_attr("RTA_PREFSRC")
    except (OSError, IndexError):
        return None
    if source is None or ipaddress.ip_address(source).is_loopback:
        return None
    return f"[{source}]:{listen_port}" if ":" in source else f"{source}:{listen_port}"


def backoff(attempt: int, cap: float) -> float:
    """Jittered exponential backoff: 0.5 s doubling, capped, +-25 %."""
    return min(cap, 0.5 * 2 ** attempt) * random.uniform(0.75, 1.25)


@dataclass
class Agent:
    settings: Settings
    state: StateDir = field(init=False)
    control: ControlStatus = field(default_factory=ControlStatus)
    header: dict | None = None
    entries: dict = field(default_factory=dict)
    netmap: Netmap | None = None
    applied_revision: int | None = None
    backend: str | None = None
    public_key: str | None = None
    private_key: str = field(default="", repr=False)
    node: dict | None = None

    def __post_init__(self):
        self.state = StateDir(self.settings.state_dir)
        self.client = ControlClient(self.settings.control_urls, ca=self.settings.ca)
        self._reconcile_now = asyncio.Event()
        self._stop = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------

    async def run(self) -> None:
        self.private_key = await asyncio.to_thread(self.state.private_key)
        self.public_key = keys.public_key_of(self.private_key)
        self.backend = await asyncio.to_thread(applier.detect_backend, self.settings.backend, self.settings.interface)
        emit("backend_selected", node=self.settings.name, backend=self.backend, reason=self.settings.backend)
        self.node = self.state.node()
        self._restore_netmap()
        tasks = [asyncio.create_task(self._reconcile_loop()), asyncio.create_task(self._session())]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()

    def stop(self) -> None:
        self._stop.set()

    def _restore_netmap(self) -> None:
        cached = self.state.netmap()
        if not cached or not self.node:
            return
        try:
            self.header, self.entries = cached["header"], cached["entries"]
            self.netmap = netmaps.parse(self.header, self.entries)
        except (KeyError, TypeError, netmaps.BadNetmap) as exc:
            emit("netmap_cache_ignored", node=self.node.get("node_id"), reason=str(exc))
            self.header, self.entries, self.netmap = None, {}, None
            return
        emit("netmap_restored", node=self.node.get("node_id"), reason="cache", revision=self.netmap.revision,
             peers=len(self.netmap.peers))
        self._reconcile_now.set()

    # -- control-plane session ------------------------------------------------

    def _reachable(self) -> None:
        if not self.control.connected:
            emit("control_restored" if self.control.unreachable_since else "control_connected",
                 node=self.node and self.node.get("node_id"), url=self.client.url, reason="request_succeeded",
                 revision=self.netmap.revision if self.netmap else None)
        self.control = ControlStatus(True, self.client.url)

    def _unreachable(self, error: Exception) -> None:
        if self.control.connected or self.control.unreachable_since is None:
            emit("control_unreachable", node=self.node and self.node.get("node_id"), reason=str(error),
                 revision=self.netmap.revision if self.netmap else None)
            self.control = ControlStatus(False, self.client.url, time.time(), str(error))
        else:
            self.control.last_error = str(error)

    async def _registration_body(self) -> dict:
        # pyroute2's synchronous API must not run on the event loop's thread: use a worker thread.
        endpoint = self.settings.endpoint or await asyncio.to_thread(
            advertised_endpoint, self.client.url, self.settings.listen_port)
        return {"public_key": self.public_key, "name": self.settings.name,
                "listen_port": self.settings.listen_port, "endpoint": endpoint}

    async def _register(self) -> None:
        """Make sure this node is enrolled and its record is current; retried until it is."""
        attempt = 0
        while not self._stop.is_set():
            try:
                if self.node:
                    answer = await self.client.register(self.node["node_token"], await self._registration_body(),
                                                        self.private_key)
                else:
                    token = self.settings.join_token_file.read_text().strip() if self.settings.join_token_file else ""
                    if not token:
                        raise Refused("no node identity yet and no join token to enroll with")
                    answer = await self.client.register(token, await self._registration_body(), self.private_key)
                    emit("node_enrolled", node=answer["node_id"], mesh_ip=answer["mesh_ip"], reason="join_token",
                         revision=answer["revision"])
                self._reachable()
                if self.node and answer["node_id"] == self.node["node_id"] and answer["mesh_ip"] != self.node["mesh_ip"]:
                    emit("mesh_ip_changed", node=answer["node_id"], reason="control", revision=answer["revision"])
                self.node = {**answer, "control_urls": self.settings.control_urls}
                self.state.save_node(self.node)
                return
            except Gone as exc:
                emit("node_identity_rejected", node=self.node and self.node.get("node_id"), reason=str(exc))
                self._forget_identity()
            except TemporaryError as exc:
                self._unreachable(exc)
                await self._sleep(backoff(attempt, self._retry_cap()))
                attempt += 1
            except (Refused, OSError) as exc:
                emit("registration_refused", node=self.settings.name, reason=str(exc))
                await self._sleep(backoff(attempt, 30.0))
                attempt += 1

    def _retry_cap(self) -> float:
        """How long to back off at most: an enrolled node must be back within the control
        plane's grace period after an outage, so it never waits past a third of the offline
        threshold; a node still enrolling can wait longer."""
        if self.node:
            return float(self.node.get("offline_after", 6.0)) / 3
        return 10.0

    def _forget_identity(self) -> None:
        """The control plane no longer knows this node (removed by an admin): enroll anew."""
        self.node = None
        self.state.forget_node()

    async def _session(self) -> None:
        while not self._stop.is_set():
            await self._register()
            if self._stop.is_set():
                return
            heartbeats = asyncio.create_task(self._heartbeat_loop())
            watch = asyncio.create_task(self._watch_loop())
            done, pending = await asyncio.wait({heartbeats, watch}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if isinstance(task.exception(), Gone):
                    # Removed by an admin (or left): respect it. Drop every peer, keep the
                    # interface, and do not re-enroll until the agent is started again.
                    emit("node_removed", node=self.node and self.node.get("node_id"), reason=str(task.exception()),
                         revision=self.netmap.revision if self.netmap else None)
                    self._forget_identity()
                    self._clear_peers()
                    await self._stop.wait()
                    return

    def _clear_peers(self) -> None:
        """Removed from the mesh: keep the interface, drop every peer (they dropped us)."""
        if self.header is not None:
            self.entries = {}
            self.netmap = netmaps.parse(self.header, {})
            self._reconcile_now.set()

    async def _heartbeat_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            interval = float(self.node.get("heartbeat_interval", 2.0))
            try:
                answer = await self.client.heartbeat(self.node["node_id"], self.node["node_token"],
                                                     await self._heartbeat_body())
                self._reachable()
                attempt = 0
                await self._sleep(float(answer.get("heartbeat_interval", interval)))
            except TemporaryError as exc:
                self._unreachable(exc)
                await self._sleep(backoff(attempt, self._retry_cap()))
                attempt += 1
            except Refused as exc:
                emit("heartbeat_refused", node=self.node["node_id"], reason=str(exc))
                await self._sleep(interval)

    async def _heartbeat_body(self) -> dict:
        return {"applied_revision": self.applied_revision, "peers": await asyncio.to_thread(self._peer_health)}

    def _peer_health(self) -> list[dict]:
        if self.netmap is None:
            return []
        by_key = {p.public_key: p.node_id for p in self.netmap.peers}
        try:
            stats = wg.show_dump(self.settings.interface).stats
        except wg.WgError:
            return []
        now = time.time()
        return [{"node_id": by_key[s.public_key],
                 "latest_handshake_age": round(now - s.latest_handshake, 1) if s.latest_handshake else None}
                for s in stats if s.public_key in by_key]

    async def _watch_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            since = self.netmap.revision if self.netmap else None
            try:
                async for answer in self.client.watch(self.node["node_token"], since):
                    self._reachable()
                    attempt = 0
                    self._take(answer)
            except TemporaryError as exc:
                self._unreachable(exc)
                await self._sleep(backoff(attempt, 5.0))
                attempt += 1

    def _take(self, answer: dict) -> None:
        """Fold one netmap answer into the map; persist it; wake the reconciler."""
        entries = netmaps.fold(self.entries, answer)
        header = {k: answer[k] for k in ("revision", "mesh_prefix", "self") if k in answer}
        try:
            netmap = netmaps.parse(header, entries)
        except netmaps.BadNetmap as exc:
            emit("netmap_rejected", node=self.node["node_id"], reason=str(exc), revision=answer.get("revision"))
            return
        for node_id, reason in netmap.rejected:
            emit("peer_rejected", node=self.node["node_id"], peer=node_id, reason=reason, revision=netmap.revision)
        self.header, self.entries, self.netmap = header, entries, netmap
        self.state.save_netmap(header, entries)
        self._reconcile_now.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    # -- reconcile ------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._reconcile_now.wait(), RECHECK_INTERVAL)
                triggered = True
            except TimeoutError:
                triggered = False
            self._reconcile_now.clear()
            if self.netmap is None:
                continue
            try:
                await asyncio.to_thread(self.reconcile, self.netmap, triggered)  # the only caller: no lock
            except Exception as exc:  # a failed pass is retried on the next one
                emit("apply_failed", node=self.netmap.me.node_id, reason=repr(exc), revision=self.netmap.revision)

    def reconcile(self, netmap: Netmap, announce_noop: bool = True) -> bool:
        """One pass: converge the interface on `netmap`. Returns True when something changed."""
        desired = desired_state(netmap, self.settings.interface, self.settings.listen_port)
        conf = render(desired, self.state.private_key(), netmap.revision)
        if not self.state.conf_path.exists() or self.state.conf_path.read_text() != conf:
            atomic_write(self.state.conf_path, conf.encode(), 0o600)
        plan = make_plan(observe(self.settings.interface), desired)
        node = netmap.me.node_id
        if plan.empty:
            if announce_noop and self.applied_revision != netmap.revision:
                emit("apply_noop", node=node, reason="converged", revision=netmap.revision)
            self.applied_revision = netmap.revision
            return False
        result = applier.apply(plan, desired, str(self.state.conf_path), self.backend, str(self.state.wg_log))
        self._log_changes(plan, netmap, result)
        if not result.errors:
            self.applied_revision = netmap.revision
        return True

    def _log_changes(self, plan, netmap: Netmap, result) -> None:
        node, revision = netmap.me.node_id, netmap.revision
        known = {p.public_key: p for p in netmap.peers}
        if "wireguard_synced" in result.done:
            for peer in plan.peers_added:
                emit("peer_added", node=node, peer=peer.name, public_key=peer.public_key,
                     allowed_ips=list(peer.allowed_ips), endpoint=peer.endpoint, reason="online", revision=revision)
            for peer in plan.peers_removed:
                info = known.get(peer.public_key)
                emit("peer_removed", node=node, peer=info.name if info else None, public_key=peer.public_key,
                     reason="offline" if info is not None else "deleted", revision=revision)
            for old, new in plan.peers_updated:
                emit("peer_updated", node=node, peer=new.name, public_key=new.public_key, reason="endpoint"
                     if old.endpoint != new.endpoint else "allowed_ips", revision=revision)
        for step in result.done:
            kind, _, what = step.partition(":")
            if kind in ("route_added", "route_removed", "address_added", "address_removed", "interface_created"):
                emit(kind, node=node, target=what, reason="reconcile", revision=revision)
        for error in result.errors:
            emit("apply_error", node=node, reason=error, revision=revision)

    # -- status ---------------------------------------------------------------

    def status(self) -> dict:
        stats = {}
        try:
            stats = {s.public_key: s for s in wg.show_dump(self.settings.interface).stats}
        except wg.WgError:
            pass
        now = time.time()
        peers = []
        for peer in (self.netmap.peers if self.netmap else ()):
            s = stats.get(peer.public_key)
            peers.append({"node_id": peer.node_id, "name": peer.name, "mesh_ip": peer.mesh_ip,
                          "public_key": peer.public_key, "endpoint": peer.endpoint, "online": peer.online,
                          "configured": s is not None,
                          "latest_handshake": s.latest_handshake if s and s.latest_handshake else None,
                          "latest_handshake_age": round(now - s.latest_handshake, 1) if s and s.latest_handshake
                          else None, "rx": s.rx if s else 0, "tx": s.tx if s else 0})
        return {"node_id": self.node and self.node.get("node_id"), "name": self.settings.name,
                "mesh_ip": self.netmap.me.mesh_ip if self.netmap else (self.node or {}).get("mesh_ip"),
                "public_key": self.public_key, "interface": self.settings.interface, "backend": self.backend,
                "revision": self.netmap.revision if self.netmap else None,
                "applied_revision": self.applied_revision,
                "control": "connected" if self.control.connected else "unreachable",
                "control_url": self.control.url, "unreachable_since": self.control.unreachable_since,
                "last_error": self.control.last_error, "peers": peers,
                "rejected": [{"node_id": n, "reason": r} for n, r in (self.netmap.rejected if self.netmap else ())]}
