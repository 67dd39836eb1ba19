"""The registry's rules, called directly with plain arguments (no HTTP), on SQLite and PostgreSQL."""
import logging

import msgspec
import pytest

from control import config
from control.registry.registry import Registry
from control.rules import ipam, tokens
from control.rules.errors import KeyTaken, NotFound, ProofRejected, Unauthorized
from control.rules.records import HeartbeatReport, JoinTokenRequest, Registration, RegistrySettings, TunnelDown
from control.store import db
from testbed.enrol import new_key, proven
from tests.control.support import FakeClock, Ids


class Mesh:
    """A registry on a fake clock that remembers every revision it announced."""

    def __init__(self):
        self.clock = FakeClock()
        self.announced: list[int] = []
        self.registry = Registry(RegistrySettings(ipam.parse_prefix("100.64.0.0/29")), self.clock, Ids(),
                                 on_change=self.announced.append)

    def join_token(self, **request) -> str:
        _, secret = self.registry.join_tokens.create(JoinTokenRequest(**request))
        return secret

    def registration(self, bearer: str, name: str = "a", key: str | None = None, **extra) -> Registration:
        body = {"public_key": key or new_key(), "name": name, "listen_port": 51820, "endpoint": None, **extra}
        challenge = msgspec.structs.asdict(self.registry.challenge(bearer))
        return Registration(**proven(challenge, body))

    def enrol(self, bearer: str, name: str = "a", **extra):
        return self.registry.register(bearer, self.registration(bearer, name, **extra))

    def sweep_for(self, seconds: float) -> list[str]:
        """Sweep every 0.5 s for `seconds`, as the sweeper task does; the nodes declared offline."""
        offline = []
        for _ in range(int(seconds / 0.5)):
            self.clock.now += 0.5
            offline += self.registry.sweep()
        return offline


@pytest.fixture
def mesh(store):
    return Mesh()


def test_enrolment_allocates_upward_and_bumps_the_revision_once(mesh):
    token = mesh.join_token(reusable=True)
    first, second = mesh.enrol(token, "a"), mesh.enrol(token, "b")
    assert (first.node.mesh_ip, second.node.mesh_ip) == ("100.64.0.1", "100.64.0.2")
    assert (first.revision, second.revision) == (1, 2) and mesh.announced == [1, 2]
    assert first.node_token.startswith(tokens.NODE) and first.node.token_hash == tokens.digest(first.node_token)


def test_a_registered_key_is_taken(mesh):
    token = mesh.join_token(reusable=True)
    key = new_key()
    mesh.enrol(token, key=key)
    with pytest.raises(KeyTaken):
        mesh.enrol(token, key=key)


def test_enrolment_needs_a_proof(mesh):
    token = mesh.join_token()
    with pytest.raises(ProofRejected):
        mesh.registry.register(token, Registration(new_key(), "a", 51820, None))
    assert mesh.enrol(token).revision == 1  # the failed attempt consumed nothing


@pytest.mark.parametrize("case, message", [("used", "already used"), ("expired", "expired"),
                                           ("revoked", "revoked"), ("unknown", "unknown join token")])
def test_a_join_token_that_admits_nobody_says_why(mesh, case, message):
    token = mesh.join_token(ttl_seconds=10)
    if case == "used":
        mesh.enrol(token)
    elif case == "expired":
        mesh.clock.now += 10
    elif case == "revoked":
        mesh.registry.join_tokens.revoke(mesh.registry.join_tokens.every()[0].token.id)
    else:
        token = tokens.new_token(tokens.JOIN)
    with pytest.raises(Unauthorized, match=message):
        mesh.registry.challenge(token)


def test_re_registering_unchanged_keeps_the_revision_and_a_change_bumps_it_once(mesh):
    key = new_key()
    enrolled = mesh.enrol(mesh.join_token(), key=key)
    node_token = enrolled.node_token
    same = mesh.registry.register(node_token, Registration(key, "a", 51820, None))
    assert (same.revision, same.node.mesh_ip, mesh.announced) == (1, enrolled.node.mesh_ip, [1])
    moved = mesh.registry.register(node_token, Registration(key, "a", 51820, "192.0.2.1:51820"))
    assert moved.revision == 2 and moved.node.endpoint == "192.0.2.1:51820" and mesh.announced == [1, 2]


def test_silent_nodes_go_offline_after_the_grace_and_a_heartbeat_brings_them_back(mesh):
    node = mesh.enrol(mesh.join_token()).node
    assert mesh.registry.sweep() == []  # the first sweep grants grace
    assert mesh.sweep_for(6.0) == []  # silent for exactly the threshold: still online
    assert mesh.sweep_for(0.5) == [node.id]
    assert mesh.registry.get_node(node.id).online is False
    report = HeartbeatReport(mesh.clock.now, applied_revision=2)
    assert mesh.registry.record_heartbeats({node.id: report}) == [node.id]
    assert mesh.registry.record_heartbeats({node.id: report}) == []  # already online: no bump
    assert mesh.announced == [1, 2, 3]


def test_removal_is_one_bump_and_a_missing_node_is_not_found(mesh):
    node = mesh.enrol(mesh.join_token()).node
    assert mesh.registry.delete_node(node.id, "admin") == 2
    with pytest.raises(NotFound):
        mesh.registry.delete_node(node.id, "admin")
    revision, listed = mesh.registry.list_nodes()
    assert (revision, listed) == (2, [])


def test_load_is_full_from_nothing_and_partial_from_a_retained_revision(mesh):
    token = mesh.join_token(reusable=True)
    a, b = mesh.enrol(token, "a").node, mesh.enrol(token, "b").node
    full = mesh.registry.load(None)
    assert full.full and full.revision == 2 and set(full.nodes) == {a.id, b.id}
    assert full.changes == [(1, a.id), (2, b.id)]
    mesh.registry.delete_node(a.id, "admin")
    partial = mesh.registry.load(2)
    assert not partial.full and partial.changes == [(3, a.id)] and partial.nodes == {}
    view, token_hash = full.nodes[b.id]
    assert (view.node_id, view.mesh_ip, token_hash) == (b.id, b.mesh_ip, b.token_hash)


@pytest.fixture
def sqlite_mesh(tmp_path):
    """A mesh on SQLite only: the store is filled with SQLite's max_page_count (PostgreSQL says disk
    full by SQLSTATE 53100, which `test_db.py` classifies)."""
    db.connect(config.sqlite_url(tmp_path / "control.db"))
    db.migrate()
    yield Mesh()
    db.db.close()


def test_a_nearly_full_store_keeps_every_node_alive_and_drops_only_the_report_it_cannot_hold(sqlite_mesh, caplog):
    mesh = sqlite_mesh
    token = mesh.join_token(reusable=True)
    big, small, other = (mesh.enrol(token, name).node.id for name in ("big", "small", "other"))
    pages = db.db.execute_sql("PRAGMA page_count").fetchone()[0]
    db.db.execute_sql(f"PRAGMA max_page_count = {pages + 2}")  # a little free space left
    try:
        mesh.clock.now += 1
        flood = tuple(TunnelDown(f"{i:016x}", 1.0, "no_traffic") for i in range(13_000))  # ~900 KB of JSON
        batch = {big: HeartbeatReport(mesh.clock(), 1, None, flood),
                 small: HeartbeatReport(mesh.clock(), 2), other: HeartbeatReport(mesh.clock(), 3)}
        with caplog.at_level(logging.INFO, logger="meshvpn"):
            assert mesh.registry.record_heartbeats(batch) == []  # not Unavailable: nothing to keep for later
        _, listed = mesh.registry.list_nodes()
        seen = {node.id: (node.last_seen, node.applied_revision, node.tunnels_down) for node in listed}
        assert seen == {big: (mesh.clock(), 1, ()), small: (mesh.clock(), 2, ()), other: (mesh.clock(), 3, ())}
        assert [r.node for r in caplog.records if r.getMessage() == "heartbeat_trimmed"] == [big]
        assert mesh.sweep_for(3) == []  # every node heartbeated: none goes offline
    finally:
        db.db.execute_sql("PRAGMA max_page_count = 1073741823")


def test_a_node_that_keeps_changing_its_registration_is_answered_but_changed_only_as_its_budget_allows(mesh, caplog):
    from control.registry.registry import CHANGE_EVERY, CHANGES_BURST
    from control.rules.errors import TooManyRequests
    token = mesh.join_token(reusable=True)
    enrolled = mesh.enrol(token, "flip")
    node_token, key = enrolled.node_token, enrolled.node.public_key
    names = iter(f"flip{i}" for i in range(100))
    for _ in range(CHANGES_BURST):  # restarts at new addresses, renames: a burst passes
        mesh.registry.register(node_token, Registration(key, next(names), 51820, None))
    revision = mesh.registry.current_revision()
    with caplog.at_level(logging.INFO, logger="meshvpn"):
        for _ in range(5):  # past its budget: answered (it stays online), nothing changed, logged once
            answered = mesh.registry.register(node_token, Registration(key, next(names), 51820, None))
            assert answered.revision == revision and answered.node.name == "flip9"
    assert mesh.registry.current_revision() == revision
    assert len([r for r in caplog.records if r.getMessage() == "registration_throttled"]) == 1
    with pytest.raises(TooManyRequests, match="key"):  # a new key needs its proof and its budget
        mesh.registry.register(node_token, mesh.registration(node_token, "flip9"))
    mesh.clock.now += CHANGE_EVERY
    mesh.registry.register(node_token, Registration(key, next(names), 51820, None))
    assert mesh.registry.current_revision() == revision + 1


def test_most_of_the_mesh_falling_silent_together_is_held_online_then_declared_offline(mesh, caplog):
    token = mesh.join_token(reusable=True)
    ids = [mesh.enrol(token, f"n{i}").node.id for i in range(5)]
    settings = mesh.registry.settings
    silent_since, until = mesh.clock(), mesh.clock() + settings.offline_after + settings.disruption_hold
    with caplog.at_level(logging.INFO, logger="meshvpn"):
        offline = []
        while mesh.clock.now < until + 5:  # ids[0] and ids[1] keep beating; three fall silent
            mesh.clock.now += 0.5
            mesh.registry.record_heartbeats({node_id: HeartbeatReport(mesh.clock(), None) for node_id in ids[:2]})
            offline += mesh.registry.sweep()
            if mesh.clock.now <= until:
                assert offline == [], f"held while most of the mesh is silent ({mesh.clock() - silent_since} s)"
    assert sorted(offline) == sorted(ids[2:]), "declared offline once the hold is over"
    [held] = [r for r in caplog.records if getattr(r, "reason", None) == "most_nodes_silent"]
    assert held.silent == 3


def test_a_disruption_is_seen_though_the_silent_nodes_beat_on_phases_spread_over_the_interval(mesh):
    """Nodes heartbeat on phases of their own: when all fall silent together, the first crosses the
    offline threshold while the others are only late. Counted past the threshold alone, each sweep
    saw a few silent nodes, never most of them, and declared every node offline in turn."""
    token = mesh.join_token(reusable=True)
    ids = [mesh.enrol(token, f"n{i}").node.id for i in range(6)]  # the /29 holds six
    settings = mesh.registry.settings
    interval, step = settings.heartbeat_interval, 0.25
    phases = {node_id: i * interval / len(ids) for i, node_id in enumerate(ids)}
    start = mesh.clock.now
    for tick in range(int(4 * interval / step)):  # everyone beats on its own phase
        mesh.clock.now = start + tick * step
        beating = [node_id for node_id, phase in phases.items() if (mesh.clock.now - start - phase) % interval < step]
        mesh.registry.record_heartbeats({node_id: HeartbeatReport(mesh.clock(), None) for node_id in beating})
        assert mesh.registry.sweep() == []
    silent_since = mesh.clock.now  # then nobody beats (the control plane's own network)
    offline = []
    while mesh.clock.now < silent_since + settings.offline_after + settings.disruption_hold - interval:
        mesh.clock.now += step
        offline += mesh.registry.sweep()
    assert offline == [], f"{len(offline)} of {len(ids)} declared offline during the hold"
