"""The registry service: every membership change, each in one database transaction.

Owns the business rules: enrollment with join tokens and proof of key possession, stable mesh IPs, node
tokens, heartbeats, offline sweeps and the revision that every netmap-visible
change bumps exactly once. Blocking (peewee); the async layer runs it in threads.
Transactions that bump the revision lock the mesh-state row first, so all of
them serialize across workers and instances and take locks in one order.
"""
from __future__ import annotations

import ipaddress
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec
import peewee

from control import db as database
from control import ipam, tokens
from control.challenges import Challenges
from control.errors import AddressSpaceExhausted, KeyTaken, NotFound, Unauthorized, Unavailable
from control.liveness import decide_sweep
from control.models import Change, JoinToken, MeshState, Node, db
from control.netmap import NodeView
from control.schemas import Heartbeat, JoinTokenCreate, Register
from meshcommon.events import emit

CHANGE_LOG_KEEP = 5000  # revisions of change log kept for deltas
NOTIFY_CHANNEL = "meshvpn_revision"
# The store itself is down or busy past retries: nothing about the data, worth trying again.
STORE_DOWN = (peewee.OperationalError, peewee.InterfaceError)


@dataclass(frozen=True)
class Settings:
    prefix: ipam.Network
    heartbeat_interval: float = 2.0
    offline_after: float = 6.0
    sweep_interval: float = 0.5

    @property
    def gap_limit(self) -> float:
        """A pause in sweeping longer than this means the control plane was down: grant grace."""
        return max(2.0, 4 * self.sweep_interval)


@dataclass(frozen=True)
class Loaded:
    """Membership read from the database for the in-process cache."""

    revision: int
    horizon: int
    changes: list[tuple[int, str]]
    nodes: dict[str, tuple[NodeView, str]]  # node id -> (view, token hash); changed ids only when partial
    full: bool


def view_of(node: Node) -> NodeView:
    return NodeView(node.id, node.name, node.mesh_ip, node.public_key, node.endpoint,
                    node.listen_port, node.online)


def new_id() -> str:
    return secrets.token_hex(8)


class Registry:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 make_id: Callable[[], str] = new_id,
                 on_change: Callable[[int], None] = lambda revision: None):
        self.settings = settings
        self.clock = clock
        self.make_id = make_id
        self.on_change = on_change
        self.challenges = Challenges(clock)

    # -- revision ---------------------------------------------------------

    def _lock_state(self) -> MeshState:
        query = MeshState.select().where(MeshState.id == 1)
        if database.is_postgres():
            query = query.for_update()
        return query.get()

    def _bump(self, node_ids: Iterable[str]) -> int:
        """Advance the revision once and log which nodes changed. Caller holds the state lock."""
        MeshState.update(revision=MeshState.revision + 1).where(MeshState.id == 1).execute()
        revision = MeshState.select(MeshState.revision).where(MeshState.id == 1).scalar()
        Change.insert_many([{"revision": revision, "node_id": node_id} for node_id in node_ids]).execute()
        if revision % 500 == 0:
            self._prune(revision)
        if database.is_postgres():
            db.execute_sql("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(revision)))
        return revision

    def _prune(self, revision: int) -> None:
        horizon = revision - CHANGE_LOG_KEEP
        if horizon > 0:
            Change.delete().where(Change.revision <= horizon).execute()
            MeshState.update(horizon=horizon).where(MeshState.id == 1).execute()

    def _write(self, fn):
        """Run `fn` in a retried write transaction; announce the revision it reached, if any."""
        result = database.retrying(fn)
        revision = getattr(result, "revision", None)
        if revision is not None:
            self.on_change(revision)
        return result

    def current_revision(self) -> int:
        return MeshState.select(MeshState.revision).where(MeshState.id == 1).scalar()

    # -- enrollment -------------------------------------------------------

    def register(self, bearer: str, request: Register) -> dict:
        if bearer.startswith(tokens.NODE):
            return self._write(lambda: self._reregister(bearer, request)).answer
        for _ in range(20):
            try:
                return self._write(lambda: self._enroll(bearer, request)).answer
            except peewee.IntegrityError:
                if Node.select().where(Node.public_key == request.public_key).exists():
                    raise KeyTaken("this public key is already registered; re-register with that node's token")
                # Another writer took the mesh IP or id we picked: pick again.
        raise AddressSpaceExhausted("could not allocate a mesh IP after repeated conflicts")

    def challenge(self, bearer: str) -> dict:
        """A single-use nonce for proving key possession, to a live join token or a known node token."""
        if bearer.startswith(tokens.NODE):
            if not Node.select().where(Node.token_hash == tokens.digest(bearer)).exists():
                raise Unauthorized("unknown node token")
        else:
            self._usable_join_token(bearer, self.clock())
        return self.challenges.issue(tokens.digest(bearer))

    @staticmethod
    def _usable_join_token(bearer: str, now: float) -> JoinToken:
        token = JoinToken.get_or_none(JoinToken.token_hash == tokens.digest(bearer))
        if token is None:
            raise Unauthorized("unknown join token")
        if token.revoked_at is not None:
            raise Unauthorized("join token was revoked")
        if token.expires_at is not None and now >= token.expires_at:
            raise Unauthorized("join token has expired")
        if not token.reusable and token.uses:
            raise Unauthorized("single-use join token was already used")
        return token

    def _consume_join_token(self, bearer: str, now: float) -> JoinToken:
        token = self._usable_join_token(bearer, now)
        # Conditional update: of concurrent users of a single-use token, one wins.
        used = (JoinToken.update(uses=JoinToken.uses + 1)
                .where((JoinToken.id == token.id) & (JoinToken.reusable | (JoinToken.uses == 0)))
                .execute())
        if not used:
            raise Unauthorized("single-use join token was already used")
        return token

    def _enroll(self, bearer: str, request: Register):
        now = self.clock()
        self._usable_join_token(bearer, now)  # a wrong token is told so before anything about its proof
        if Node.select().where(Node.public_key == request.public_key).exists():
            raise KeyTaken("this public key is already registered; re-register with that node's token")
        self.challenges.redeem(tokens.digest(bearer), request.public_key, request.nonce, request.proof)
        join_token = self._consume_join_token(bearer, now)
        state = self._lock_state()
        mesh_ip = self._allocate(state.last_ip)
        node_token = tokens.new_token(tokens.NODE)
        node_id = self.make_id()
        revision = self._bump([node_id])
        MeshState.update(last_ip=mesh_ip).where(MeshState.id == 1).execute()
        node = Node.create(id=node_id, name=request.name, public_key=request.public_key,
                           mesh_ip=mesh_ip, endpoint=request.endpoint, listen_port=request.listen_port,
                           token_hash=tokens.digest(node_token), created_at=now, last_seen=now,
                           online=True, changed_revision=revision)
        emit("node_registered", node=node_id, node_name=request.name, mesh_ip=mesh_ip,
             endpoint=request.endpoint, join_token=join_token.id, reason="join_token", revision=revision)
        return _Enrolled(revision, self._answer(node, node_token, revision))

    def _allocate(self, last_ip: str | None) -> str:
        """Next address after the last allocation; once the prefix is used up, the lowest hole."""
        candidate = ipam.after(self.settings.prefix, last_ip)
        if candidate is not None and not Node.select().where(Node.mesh_ip == candidate).exists():
            return candidate
        used = (row[0] for row in Node.select(Node.mesh_ip).tuples())
        try:
            return ipam.next_free_ip(self.settings.prefix, used)
        except ipam.AddressExhausted as exc:
            raise AddressSpaceExhausted(str(exc), mesh_prefix=str(exc.prefix)) from None

    def _reregister(self, bearer: str, request: Register):
        now = self.clock()
        self._lock_state()
        node = Node.get_or_none(Node.token_hash == tokens.digest(bearer))
        if node is None:
            raise Unauthorized("unknown node token")
        if request.public_key != node.public_key:
            if Node.select().where(Node.public_key == request.public_key).exists():
                raise KeyTaken("this public key belongs to another node")
            self.challenges.redeem(tokens.digest(bearer), request.public_key, request.nonce, request.proof)
        wanted = {"name": request.name, "public_key": request.public_key,
                  "endpoint": request.endpoint, "listen_port": request.listen_port}
        changed = {field: value for field, value in wanted.items() if getattr(node, field) != value}
        revision = None
        if changed or not node.online:
            revision = self._bump([node.id])
            Node.update(**changed, online=True, last_seen=now, changed_revision=revision).where(
                Node.id == node.id).execute()
            emit("node_reregistered", node=node.id, changed=sorted(changed), reason="node_token",
                 revision=revision)
        else:
            Node.update(last_seen=now).where(Node.id == node.id).execute()
        node = Node.get_by_id(node.id)
        current = revision if revision is not None else self.current_revision()
        return _Enrolled(revision, self._answer(node, bearer, current))

    def _answer(self, node: Node, node_token: str, revision: int) -> dict:
        return {"node_id": node.id, "name": node.name, "mesh_ip": node.mesh_ip,
                "mesh_prefix": str(self.settings.prefix), "node_token": node_token,
                "heartbeat_interval": self.settings.heartbeat_interval,
                "offline_after": self.settings.offline_after, "revision": revision}

    # -- liveness ---------------------------------------------------------

    def record_heartbeats(self, batch: dict[str, tuple[float, Heartbeat]]) -> list[str]:
        """Store a batch of heartbeats; nodes that were offline come back online. Returns those ids.

        One transaction for the batch; if the store refuses it for any reason but being unavailable,
        each node is written alone and only the nodes whose record fails are dropped (and logged),
        so one node's bad data never costs another node its liveness. `Unavailable` means nothing
        was stored and the caller may keep the batch for the next try.
        """
        try:
            self._store_heartbeats(batch)
        except STORE_DOWN as exc:
            raise Unavailable(f"store unavailable: {exc}") from None
        except Exception:
            for node_id in sorted(batch):
                try:
                    self._store_heartbeats({node_id: batch[node_id]})
                except STORE_DOWN as exc:
                    raise Unavailable(f"store unavailable: {exc}") from None
                except Exception as exc:
                    emit("heartbeat_dropped", node=node_id, reason=f"store refused it: {exc}")
        returning = [node_id for (node_id,) in Node.select(Node.id).where(
            Node.id.in_(list(batch)) & ~Node.online).tuples()]
        if not returning:
            return []
        return self._write(lambda: self._bring_online(returning)).ids

    def _store_heartbeats(self, batch: dict[str, tuple[float, Heartbeat]]) -> None:
        def store():
            for node_id in sorted(batch):
                seen, beat = batch[node_id]
                health = json.dumps([{"node_id": p.node_id, "latest_handshake_age": p.latest_handshake_age}
                                     for p in beat.peers])
                Node.update(last_seen=seen,
                            applied_revision=beat.applied_revision, peer_health=health).where(
                    Node.id == node_id).execute()
        database.retrying(store)

    def _bring_online(self, candidates: list[str]):
        self._lock_state()
        ids = [node_id for (node_id,) in Node.select(Node.id).where(
            Node.id.in_(candidates) & ~Node.online).tuples()]
        if not ids:
            return _Changed(None, [])
        revision = self._bump(ids)
        Node.update(online=True, changed_revision=revision).where(Node.id.in_(ids)).execute()
        for node_id in ids:
            emit("node_online", node=node_id, reason="heartbeat", revision=revision)
        return _Changed(revision, ids)

    def sweep(self) -> list[str]:
        """Declare offline every node silent for longer than the offline threshold. Idempotent."""
        return self._write(self._sweep).ids

    def _sweep(self):
        now = self.clock()
        state = self._lock_state()
        cutoff = now - self.settings.offline_after
        stale = dict(Node.select(Node.id, Node.last_seen).where(
            Node.online & (Node.last_seen < cutoff)).tuples())
        decision = decide_sweep(now, state.last_sweep_at, state.grace_until, stale,
                                self.settings.offline_after, self.settings.gap_limit)
        MeshState.update(last_sweep_at=now, grace_until=decision.grace_until).where(
            MeshState.id == 1).execute()
        if decision.grace_started and state.last_sweep_at is not None:
            emit("liveness_grace", reason="sweeping_resumed", paused_for=round(now - state.last_sweep_at, 3),
                 grace_until=decision.grace_until)
        if not decision.offline:
            return _Changed(None, [])
        revision = self._bump(decision.offline)
        Node.update(online=False, changed_revision=revision).where(Node.id.in_(decision.offline)).execute()
        for node_id in decision.offline:
            emit("node_offline", node=node_id, reason="no_heartbeat", last_seen=stale[node_id],
                 silent_for=round(now - stale[node_id], 3), revision=revision)
        return _Changed(revision, list(decision.offline))

    # -- removal ----------------------------------------------------------

    def delete_node(self, node_id: str, reason: str) -> int:
        return self._write(lambda: self._delete(node_id, reason)).revision

    def _delete(self, node_id: str, reason: str):
        self._lock_state()
        if not Node.delete().where(Node.id == node_id).execute():
            raise NotFound(f"no node {node_id!r}")
        revision = self._bump([node_id])
        emit("node_deleted", node=node_id, reason=reason, revision=revision)
        return _Changed(revision, [node_id])

    def node_for_token(self, bearer: str) -> Node | None:
        return Node.get_or_none(Node.token_hash == tokens.digest(bearer))

    # -- admin views ------------------------------------------------------

    def list_nodes(self) -> dict:
        with db.atomic():
            revision = self.current_revision()
            nodes = [self.describe(node) for node in Node.select()]
        nodes.sort(key=lambda node: ipaddress.ip_address(node["mesh_ip"]))
        return {"revision": revision, "nodes": nodes}

    def get_node(self, node_id: str) -> dict:
        node = Node.get_or_none(Node.id == node_id)
        if node is None:
            raise NotFound(f"no node {node_id!r}")
        return self.describe(node)

    def describe(self, node: Node) -> dict:
        return {**msgspec.structs.asdict(view_of(node)), "created_at": node.created_at, "last_seen": node.last_seen,
                "applied_revision": node.applied_revision, "changed_revision": node.changed_revision,
                "peer_health": json.loads(node.peer_health)}

    # -- join tokens ------------------------------------------------------

    def create_join_token(self, request: JoinTokenCreate) -> dict:
        def create():
            now = self.clock()
            secret = tokens.new_token(tokens.JOIN)
            expires = None if request.ttl_seconds is None else now + request.ttl_seconds
            token = JoinToken.create(id=self.make_id(), token_hash=tokens.digest(secret),
                                     reusable=request.reusable, description=request.description,
                                     created_at=now, expires_at=expires)
            emit("token_created", token=token.id, reusable=token.reusable, expires_at=expires,
                 reason="admin")
            return {**self._describe_token(token, now), "token": secret}
        return database.retrying(create)

    def list_join_tokens(self) -> list[dict]:
        now = self.clock()
        return [self._describe_token(t, now) for t in JoinToken.select().order_by(JoinToken.created_at)]

    def revoke_join_token(self, token_id: str) -> dict:
        def revoke():
            now = self.clock()
            token = JoinToken.get_or_none(JoinToken.id == token_id)
            if token is None:
                raise NotFound(f"no join token {token_id!r}")
            if token.revoked_at is None:
                JoinToken.update(revoked_at=now).where(JoinToken.id == token_id).execute()
                emit("token_revoked", token=token_id, reason="admin")
            return self._describe_token(JoinToken.get_by_id(token_id), now)
        return database.retrying(revoke)

    @staticmethod
    def _describe_token(token: JoinToken, now: float) -> dict:
        if token.revoked_at is not None:
            state = "revoked"
        elif token.expires_at is not None and now >= token.expires_at:
            state = "expired"
        elif not token.reusable and token.uses:
            state = "used"
        else:
            state = "active"
        return {"id": token.id, "reusable": token.reusable, "description": token.description,
                "created_at": token.created_at, "expires_at": token.expires_at,
                "revoked_at": token.revoked_at, "uses": token.uses, "state": state}

    # -- cache loading ----------------------------------------------------

    def load(self, since: int | None) -> Loaded:
        """Membership for the in-process cache: all of it, or what changed after `since`."""
        with db.atomic():
            state = MeshState.get_by_id(1)
            if since is None or since < state.horizon or since > state.revision:
                nodes = {n.id: (view_of(n), n.token_hash) for n in Node.select()}
                changes = list(Change.select(Change.revision, Change.node_id).where(
                    Change.revision <= state.revision).order_by(Change.revision, Change.node_id).tuples())
                return Loaded(state.revision, state.horizon, changes, nodes, True)
            changes = list(Change.select(Change.revision, Change.node_id).where(
                (Change.revision > since) & (Change.revision <= state.revision))
                .order_by(Change.revision, Change.node_id).tuples())
            ids = {node_id for _, node_id in changes}
            nodes = {n.id: (view_of(n), n.token_hash) for n in Node.select().where(Node.id.in_(list(ids)))}
            return Loaded(state.revision, state.horizon, changes, nodes, False)


@dataclass(frozen=True)
class _Enrolled:
    revision: int | None
    answer: dict


@dataclass(frozen=True)
class _Changed:
    revision: int | None
    ids: list[str]
