"""The registry: every membership change, each in one database transaction.

Owns the business rules: enrolment with join tokens (`join_tokens.py`) and proof of key possession
(`challenges.py`), stable mesh IPs, node tokens, liveness (`liveness.py`: heartbeats, offline
sweeps), and the revision that every netmap-visible change bumps exactly once. Takes plain
arguments and returns plain data (`control.rules.records`); the SQL is in `store/`, answer shapes
in `api/views.py`. With its parts it is the one gateway to the store for the rest of the control
plane. Blocking (peewee): the runtime runs it in threads. Transactions that bump the revision lock
the mesh-state row first, so all of them serialize across workers and instances and take locks in
one order. Must not import the HTTP layer, its schemas or the runtime.
"""
from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from control.registry import liveness
from control.registry.challenges import Challenges
from control.registry.join_tokens import JoinTokens
from control.registry.written import T, Written
from control.rules import ipam, pair_health, tokens
from control.rules.errors import (
    AddressSpaceExhausted,
    InvalidRequest,
    KeyTaken,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from control.rules.records import (
    Enrolled,
    HeartbeatReport,
    Loaded,
    NodeRecord,
    Registration,
    RegistrySettings,
)
from control.store import changes, mesh_state, nodes, notify
from control.store import db as database
from meshcommon.contract.addresses import host
from meshcommon.contract.wire import ChallengeAnswer
from meshcommon.plumbing.budget import Budgets
from meshcommon.plumbing.events import emit

ENROL_ATTEMPTS = 20  # picks of a mesh IP and node id before giving up on conflicts with other writers
CHANGES_BURST = 10  # changes of its own record a node may make in a row (restarts at new addresses, say)
CHANGE_EVERY = 30.0  # seconds: and then one every so often
KEY_TAKEN = "this public key is already registered; re-register with that node's token"


def new_id() -> str:
    """An id for a node or a join token."""
    return secrets.token_hex(8)


class Registry:
    def __init__(self, settings: RegistrySettings, clock: Callable[[], float] = time.time,
                 make_id: Callable[[], str] = new_id,
                 on_change: Callable[[int], None] = lambda revision: None):
        self.settings = settings
        self.clock = clock
        self.make_id = make_id
        self.on_change = on_change  # called (in the writing thread) with each revision committed
        self.challenges = Challenges(clock)
        self.join_tokens = JoinTokens(clock, make_id)
        # How often a node may change its own record (name, key, endpoints) by re-registering.
        self.changes = Budgets(CHANGES_BURST, 1 / CHANGE_EVERY)
        self._changes_lock = threading.Lock()
        self._throttled: set[str] = set()  # nodes past their budget, logged once

    def _write(self, fn: Callable[[], Written[T]]) -> T:
        """Run `fn` in a retried write transaction; announce the revision it reached, if any."""
        written = database.retrying(fn)
        if written.revision is not None:
            self.on_change(written.revision)
        return written.value

    @staticmethod
    def guarded(fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)`, with a store that is down, busy or refusing the write as `Unavailable`
        (503: nothing written, try again) rather than an error nobody handles."""
        try:
            return fn(*args)
        except database.STORE_ERRORS as exc:
            said = "unavailable" if database.unavailable(exc) else "refused the write"
            raise Unavailable(f"store {said}: {exc}") from None

    def current_revision(self) -> int:
        return mesh_state.revision()

    # -- announcing changes -------------------------------------------------

    @staticmethod
    def announces_changes() -> bool:
        """Whether the store tells every worker of a new revision (PostgreSQL); else they poll."""
        return notify.announces()

    @staticmethod
    def listen(kick: Callable[[], None]) -> notify.Listener | None:
        """Call `kick` on every revision announced by any worker or instance; None if none are."""
        return notify.listen(kick)

    # -- enrolment --------------------------------------------------------

    def register(self, bearer: str, registration: Registration) -> Enrolled:
        advertised = host(registration.endpoint)
        if advertised is not None and advertised in self.settings.prefix:
            raise InvalidRequest(f"endpoint {registration.endpoint!r} is a mesh IP ({self.settings.prefix}): peers "
                                 "would send the tunnel's packets into the tunnel")
        if bearer.startswith(tokens.NODE):
            return self._write(lambda: self._reregister(bearer, registration))
        for _ in range(ENROL_ATTEMPTS):
            try:
                return self._write(lambda: self._enroll(bearer, registration))
            except database.Conflict:
                if nodes.key_taken(registration.public_key):
                    raise KeyTaken(KEY_TAKEN) from None
                # Another writer took the mesh IP or id we picked: pick again.
        raise AddressSpaceExhausted("could not allocate a mesh IP after repeated conflicts")

    def challenge(self, bearer: str) -> ChallengeAnswer:
        """A single-use nonce for proving key possession, to a live join token or a known node token."""
        if bearer.startswith(tokens.NODE):
            if not nodes.token_known(tokens.digest(bearer)):
                raise Unauthorized("unknown node token")
        else:
            self.join_tokens.usable(bearer, self.clock())
        return self.challenges.issue(tokens.digest(bearer))

    def _enroll(self, bearer: str, registration: Registration) -> Written[Enrolled]:
        now = self.clock()
        join_token = self.join_tokens.usable(bearer, now)  # told before anything about its proof
        if nodes.key_taken(registration.public_key):
            raise KeyTaken(KEY_TAKEN)
        self.challenges.redeem(tokens.digest(bearer), registration.public_key, registration.nonce,
                               registration.proof)
        self.join_tokens.consume(join_token)
        mesh_ip = self._allocate(mesh_state.lock().last_ip)
        node_token = tokens.new_token(tokens.NODE)
        node_id = self.make_id()
        revision = mesh_state.bump([node_id])
        mesh_state.set_last_ip(mesh_ip)
        node = NodeRecord(id=node_id, name=registration.name, public_key=registration.public_key, mesh_ip=mesh_ip,
                          endpoint=registration.endpoint, listen_port=registration.listen_port,
                          token_hash=tokens.digest(node_token), created_at=now, last_seen=now, online=True,
                          applied_revision=None, changed_revision=revision,
                          reflexive_endpoint=registration.reflexive_endpoint,
                          agent_version=registration.agent_version)
        nodes.add(node)
        emit("node_registered", node=node_id, node_name=registration.name, mesh_ip=mesh_ip,
             endpoint=registration.endpoint, reflexive_endpoint=registration.reflexive_endpoint,
             join_token=join_token.id, reason="join_token", revision=revision)
        return Written(Enrolled(node, node_token, revision), revision)

    def _allocate(self, last_ip: str | None) -> str:
        """Next address after the last allocation; once the prefix is used up, the lowest hole."""
        candidate = ipam.after(self.settings.prefix, last_ip)
        if candidate is not None and not nodes.ip_taken(candidate):
            return candidate
        try:
            return ipam.next_free_ip(self.settings.prefix, nodes.mesh_ips())
        except ipam.AddressExhausted as exc:
            raise AddressSpaceExhausted(str(exc), mesh_prefix=str(exc.prefix)) from None

    def _reregister(self, bearer: str, registration: Registration) -> Written[Enrolled]:
        now = self.clock()
        mesh_state.lock()
        node = nodes.by_token_hash(tokens.digest(bearer))
        if node is None:
            raise Unauthorized("unknown node token")
        if registration.public_key != node.public_key:
            if nodes.key_taken(registration.public_key):
                raise KeyTaken("this public key belongs to another node")
            self.challenges.redeem(tokens.digest(bearer), registration.public_key, registration.nonce,
                                   registration.proof)
        # An admin's rename wins over the name the agent was started with.
        wanted: dict[str, Any] = {"name": node.name if node.name_pinned else registration.name,
                                  "public_key": registration.public_key,
                                  "endpoint": registration.endpoint, "listen_port": registration.listen_port,
                                  "reflexive_endpoint": registration.reflexive_endpoint}
        changed = {field: value for field, value in wanted.items() if getattr(node, field) != value}
        if registration.agent_version != node.agent_version:  # no peer sees it: no revision, no budget
            nodes.set_agent_version(node.id, registration.agent_version)
            node = dataclasses.replace(node, agent_version=registration.agent_version)
        if changed and not self._spend_change(node.id, now):
            if "public_key" in changed:
                raise TooManyRequests(f"this node changed its registration {CHANGES_BURST} times in a row; a new "
                                      f"key is taken in {self.changes.wait(node.id, now):.0f} s")
            changed = {}  # answered for its liveness; its name and endpoints stay as they are for now
        if not changed and node.online:
            nodes.touch(node.id, now)
            return Written(Enrolled(dataclasses.replace(node, last_seen=now), bearer, mesh_state.revision()), None)
        revision = mesh_state.bump([node.id])
        nodes.update_registration(node.id, changed, now, revision)
        emit("node_reregistered", node=node.id, changed=sorted(changed), reason="node_token", revision=revision)
        node = dataclasses.replace(node, **changed, online=True, last_seen=now, changed_revision=revision)
        return Written(Enrolled(node, bearer, revision), revision)

    def _spend_change(self, node_id: str, now: float) -> bool:
        """Whether the node may change its own record now; its first refusal in a row is logged."""
        with self._changes_lock:
            if self.changes.take(node_id, now):
                self._throttled.discard(node_id)
                return True
            first = node_id not in self._throttled
            self._throttled.add(node_id)
        if first:
            emit("registration_throttled", node=node_id, reason=f"more than {CHANGES_BURST} changes in a row",
                 retry_in=round(self.changes.wait(node_id, now), 1))
        return False

    # -- liveness ---------------------------------------------------------

    def record_heartbeats(self, batch: dict[str, HeartbeatReport]) -> list[str]:
        """Store a batch of heartbeats; the ids of the nodes it brings back online (`liveness.record`)."""
        return liveness.record(batch, self._write)

    def sweep(self) -> list[str]:
        """Declare offline every node silent for longer than the offline threshold. Idempotent."""
        return self._write(lambda: liveness.sweep(self.clock(), self.settings))

    # -- removal ----------------------------------------------------------

    def delete_node(self, node_id: str, reason: str) -> int:
        revision = self._write(lambda: self._delete(node_id, reason))
        with self._changes_lock:
            self.changes.forget(node_id)
            self._throttled.discard(node_id)
        return revision

    @staticmethod
    def _delete(node_id: str, reason: str) -> Written[int]:
        mesh_state.lock()
        if not nodes.delete(node_id):
            raise NotFound(f"no node {node_id!r}")
        revision = mesh_state.bump([node_id])
        emit("node_deleted", node=node_id, reason=reason, revision=revision)
        return Written(revision, revision)

    # -- renaming ---------------------------------------------------------

    def rename_node(self, node_id: str, name: str) -> NodeRecord:
        """Give the node a new name (an admin's: its re-registrations keep it); one revision if it changed."""
        return self._write(lambda: self._rename(node_id, name))

    @staticmethod
    def _rename(node_id: str, name: str) -> Written[NodeRecord]:
        mesh_state.lock()
        node = nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id!r}")
        if node.name == name and node.name_pinned:
            return Written(node, None)
        revision = mesh_state.bump([node_id])
        nodes.rename(node_id, name, revision)
        emit("node_renamed", node=node_id, node_name=name, before=node.name, reason="admin", revision=revision)
        return Written(dataclasses.replace(node, name=name, name_pinned=True, changed_revision=revision), revision)

    # -- reading ----------------------------------------------------------

    @staticmethod
    def unhealthy_pairs() -> tuple[int, list[pair_health.Pair]]:
        """The revision and every pair of nodes without a working tunnel, as their agents report."""
        with database.read_transaction():
            return mesh_state.revision(), pair_health.unhealthy_pairs(nodes.every())

    @staticmethod
    def list_nodes() -> tuple[int, list[NodeRecord]]:
        """The revision and every node at it."""
        with database.read_transaction():
            return mesh_state.revision(), nodes.every()

    @staticmethod
    def get_node(node_id: str) -> NodeRecord:
        node = nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id!r}")
        return node

    @staticmethod
    def load(since: int | None) -> Loaded:
        """Membership for the in-process cache: all of it, or what changed after `since`."""
        with database.read_transaction():
            state = mesh_state.read()
            if since is None or since < state.horizon or since > state.revision:
                return Loaded(state.revision, state.horizon, changes.between(None, state.revision), nodes.views(),
                              True)
            changed = changes.between(since, state.revision)
            ids = {node_id for _, node_id in changed}
            return Loaded(state.revision, state.horizon, changed, nodes.views(ids), False)
