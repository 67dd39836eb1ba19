"""The in-process membership cache every worker answers netmaps and authenticates from.

Owns keeping a `Membership` (pure data, see netmap.py) in step with the
database by applying what `Registry.load` returns (a `records.Loaded`), and memoizing the
delta that thousands of watchers woken by one change all ask for. No I/O of its own; must not
import the registry or the store.
"""
from __future__ import annotations

import msgspec

from control.rules.netmap import Delta, Membership, NodeView, choose_delta, delta, delta_map, merge_changes
from control.rules.records import Loaded

MAX_SHARED_DELTAS = 256  # distinct `since` values whose delta is kept until the next revision
# Bytes of spliced deltas kept until the next revision: after a mass change, streams behind by
# different amounts each ask for a delta about as large as a full map.
MAX_SPLICED_BYTES = 64 * 2**20


class MembershipCache:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.revision = -1
        self.horizon = 0
        self.nodes: dict[str, NodeView] = {}
        self.changes: list[tuple[int, str]] = []
        self.by_token: dict[str, str] = {}  # token hash -> node id
        self.token_of: dict[str, str] = {}  # node id -> token hash
        self._deltas: dict[int, Delta | None] = {}
        # since -> the JSON of that delta around its `self`, for every watcher the delta does not name
        self._spliced: dict[int, tuple[bytes, bytes, frozenset[str]]] = {}
        self._spliced_bytes = 0
        self._encoded: dict[str, bytes] = {}  # node id -> its view as JSON, kept per change

    def apply(self, loaded: Loaded) -> bool:
        """Take in a load from the database; True when the revision advanced."""
        if loaded.revision <= self.revision and not loaded.full:
            return False
        if loaded.full:
            self.nodes, self.by_token, self.token_of, self._encoded = {}, {}, {}, {}
            self.changes = list(loaded.changes)
        else:
            merge_changes(self.changes, loaded.changes)
            for _, node_id in loaded.changes:
                if node_id not in loaded.nodes:
                    self._forget(node_id)
        for node_id, (view, token_hash) in loaded.nodes.items():
            self._forget(node_id)
            self.nodes[node_id] = view
            self._encoded[node_id] = msgspec.json.encode(view)
            self.by_token[token_hash] = node_id
            self.token_of[node_id] = token_hash
        advanced = loaded.revision != self.revision
        self.revision, self.horizon = loaded.revision, loaded.horizon
        self._trim()
        self._deltas.clear()
        self._spliced.clear()
        self._spliced_bytes = 0
        return advanced

    def _forget(self, node_id: str) -> None:
        self.nodes.pop(node_id, None)
        self._encoded.pop(node_id, None)
        token_hash = self.token_of.pop(node_id, None)
        if token_hash is not None:
            self.by_token.pop(token_hash, None)

    def _trim(self) -> None:
        drop = 0
        while drop < len(self.changes) and self.changes[drop][0] <= self.horizon:
            drop += 1
        del self.changes[:drop]

    def snapshot(self) -> Membership:
        return Membership(self.revision, self.nodes, self.changes, self.horizon)

    def node_for(self, token_hash: str) -> str | None:
        return self.by_token.get(token_hash)

    def is_online(self, node_id: str) -> bool:
        view = self.nodes.get(node_id)
        return view is not None and view.online

    def answer(self, me: str, since: int | None) -> tuple[str, bytes]:
        """The netmap answer for node `me` as (kind, JSON), sharing one delta per `since`.

        Equal, once parsed, to the netmap built the obvious way (tests/control/netmap_oracle.py).
        Both kinds are spliced from per-node JSON kept since the node last changed: a full map costs
        a join, not N encodings, and a delta, which thousands of watchers get at once, costs each of
        them a join of three pieces.
        """
        spliced = self._spliced.get(since) if since is not None else None
        if spliced is not None and me not in spliced[2]:  # the common case of a fan-out: no snapshot, no lookups
            return "delta", spliced[0] + self._encoded[me] + spliced[1]
        snapshot = self.snapshot()
        change = None
        if since is not None and self.horizon <= since < self.revision:
            # Only a `since` a delta can answer is shared, and only a bounded number of them:
            # what a client puts in `since` must not grow this cache.
            if since not in self._deltas:
                if len(self._deltas) >= MAX_SHARED_DELTAS:
                    evicted = next(iter(self._deltas))
                    self._deltas.pop(evicted)
                    self._unsplice(evicted)
                self._deltas[since] = delta(snapshot, since)
            change = choose_delta(snapshot, since, self._deltas[since])
        if change is not None:
            spliced = self._spliced.get(change.since)
            if spliced is None:
                spliced = self._splice(change)
                while self._spliced and self._spliced_bytes + len(spliced[0]) + len(spliced[1]) > MAX_SPLICED_BYTES:
                    self._unsplice(next(iter(self._spliced)))
                self._spliced[change.since] = spliced
                self._spliced_bytes += len(spliced[0]) + len(spliced[1])
            head, tail, named = spliced
            if me in named:  # the node itself changed: its own entry leaves the lists
                return "delta", msgspec.json.encode(delta_map(snapshot, change, me, self.prefix))
            return "delta", head + self._encoded[me] + tail
        head = msgspec.json.encode({"revision": self.revision, "delta": False, "mesh_prefix": self.prefix,
                                    "self": self.nodes[me]})
        peers = b",".join([blob for node_id, blob in self._encoded.items() if node_id != me])
        return "full", head[:-1] + b',"peers":[' + peers + b"]}"

    def _unsplice(self, since: int) -> None:
        spliced = self._spliced.pop(since, None)
        if spliced is not None:
            self._spliced_bytes -= len(spliced[0]) + len(spliced[1])

    def _splice(self, change: Delta) -> tuple[bytes, bytes, frozenset[str]]:
        """`change` as `DeltaNetmap` JSON before and after its `self`, in the struct's field order,
        and the ids it names (whose own answers must leave themselves out)."""
        head = msgspec.json.encode({"revision": change.revision, "since": change.since, "mesh_prefix": self.prefix})
        upserted = b",".join([self._encoded[view.node_id] for view in change.upserted])
        tail = (b',"upserted":[' + upserted + b'],"removed":' + msgspec.json.encode(change.removed)
                + b',"delta":true}')
        named = frozenset([view.node_id for view in change.upserted]) | frozenset(change.removed)
        return head[:-1] + b',"self":', tail, named
