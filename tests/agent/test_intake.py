"""Intake: answers folded into one map, each peer entry checked alone, the cache read back as written."""
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core import intake
from tests.agent.data import ME, PREFIX, decoded, delta, entry, full, key, netmap, raw, received


def test_bad_entries_are_rejected_alone_and_never_kept():
    entries = {"a": entry("a", "100.64.0.2"),
               "k": entry("k", "100.64.0.4", public_key="A" * 43 + "=" + "x"),
               "z": entry("z", "100.64.0.5", public_key="A" * 43 + "="),  # all-zero: low order
               "o": entry("o", "10.0.0.5"),
               "d": entry("d", "100.64.0.2"),
               "e": entry("e", "100.64.0.7", endpoint="10.0.0.1:99999"),
               "h": entry("h", "100.64.0.8", endpoint="peer.example:51820"),
               "n": entry("n", "100.64.0.0"),
               "i": entry("i", "not an ip"),
               "t": {**entry("t", "100.64.0.9"), "online": "yes"},
               "s": entry("s", "100.64.0.10", endpoint="[fe80::1%evil0]:51820"),  # a scope: no peer has evil0
               "l": entry("l", "100.64.0.11", endpoint="169.254.169.254:51820"),
               "m": entry("m", "100.64.0.12", endpoint="100.64.0.2:51820"),  # a mesh IP: into the tunnel
               "r": {**entry("r", "100.64.0.13"), "reflexive_endpoint": "[2001:db8::5%evil0]:51820"},
               "junk": "not an object"}
    got = netmap(entries)
    assert [p.node_id for p in got.peers] == ["a"]
    reasons = dict(got.rejected)
    assert set(reasons) == set(entries) - {"a"}
    assert "outside" in reasons["o"] and "outside" in reasons["n"] and "duplicate mesh IP" in reasons["d"]
    assert reasons["k"] == reasons["z"] == "invalid public key" and reasons["i"] == "invalid mesh IP"
    assert "malformed" in reasons["junk"] and "malformed" in reasons["t"] and "name" in reasons["h"]
    assert "scope" in reasons["s"] and "scope" in reasons["r"] and "link-local" in reasons["l"]
    assert reasons["m"] == "endpoint 100.64.0.2:51820 is a mesh IP"


def test_a_peer_claiming_this_nodes_key_or_another_peers_key_is_rejected():
    twin = entry("b", "100.64.0.3")
    first = {**twin, "node_id": "a", "mesh_ip": "100.64.0.2"}
    mine = {**twin, "node_id": "c", "mesh_ip": "100.64.0.4", "public_key": ME["public_key"]}
    got = netmap({"a": first, "b": twin, "c": mine})
    assert [p.node_id for p in got.peers] == ["a"]
    assert {n for n, _ in got.rejected} == {"b", "c"}
    assert all("duplicate public key" in reason for _, reason in got.rejected)


def test_this_node_listed_among_its_peers_is_skipped_not_rejected():
    got = netmap({"me": ME, "a": entry("a", "100.64.0.2")})
    assert [p.node_id for p in got.peers] == ["a"] and got.rejected == ()


def test_names_are_made_safe_and_mesh_ips_normalised():
    got = netmap({"x": entry("x", "100.64.0.9", name="x\n[Peer]"), "y": entry("y", "100.64.0.10", name="ok-1.b_c")})
    assert [p.name for p in got.peers] == ["?", "ok-1.b_c"]
    six = entry("me", "fd00::0001", endpoint="[2001:db8::2]:51820")
    assert netmap({}, me=six, prefix="fd00::/64").me.mesh_ip == "fd00::1"


@pytest.mark.parametrize("me, prefix, reason", [
    (entry("me", "10.1.0.1"), PREFIX, "describes this node badly"),
    ({**ME, "public_key": "nope"}, PREFIX, "describes this node badly"),
    ({**ME, "node_id": ""}, PREFIX, "describes this node badly"),
    (ME, "100.64.0.1/10", "mesh prefix"),
    (ME, "not a prefix", "mesh prefix"),
])
def test_a_netmap_that_describes_this_node_or_the_mesh_badly_is_refused_whole(me, prefix, reason):
    with pytest.raises(intake.BadNetmap, match=reason):
        netmap({"a": entry("a", "100.64.0.2")}, me=me, prefix=prefix)


def test_fold_applies_deltas_and_full_maps():
    a, b, c = entry("a", "100.64.0.2"), entry("b", "100.64.0.3"), entry("c", "100.64.0.4")
    entries = intake.fold({}, full(1, [a, b]))
    entries = intake.fold(entries, delta(2, 1, [c, {**b, "online": False}], ["a", "unknown"]))
    assert decoded(entries) == {"b": {**b, "online": False}, "c": c}
    assert decoded(intake.fold(entries, full(3, [a]))) == {"a": a}


def test_fold_drops_entries_that_name_no_node_and_keeps_the_rest_raw_for_checking():
    bad = {"node_id": "x", "public_key": 7}
    entries = intake.fold({}, full(1, ["junk", {"name": "anonymous"}, {"node_id": 5}, bad]))
    assert decoded(entries) == {"x": bad}


def test_receive_takes_the_latest_header():
    first = intake.receive(None, full(1, [entry("a", "100.64.0.2")]))
    moved = {**ME, "name": "renamed"}
    second = intake.receive(first, delta(4, 1, [], [], me=moved))
    assert (second.revision, second.me.name, list(second.entries)) == (4, "renamed", ["a"])


@pytest.mark.parametrize("held, since", [(None, 1), (1, 2), (3, 2)])
def test_a_delta_that_does_not_continue_the_map_held_is_refused(held, since):
    before = None if held is None else intake.receive(None, full(held, [entry("a", "100.64.0.2")]))
    with pytest.raises(intake.BadNetmap, match=f"since revision {since} does not continue"):
        intake.receive(before, delta(since + 1, since, [entry("b", "100.64.0.3")], []))


def test_without_peers_keeps_this_node_and_the_revision():
    got = intake.netmap_of(intake.without_peers(received({"a": entry("a", "100.64.0.2")}, revision=9)))
    assert got.peers == () and got.revision == 9 and got.me.node_id == "me"


def test_the_cache_reads_back_as_written_in_the_format_older_agents_wrote():
    held = received({"a": entry("a", "100.64.0.2"), "junk": [1, 2]}, revision=7)
    data = intake.cache_bytes(held)
    assert set(msgspec.json.decode(data)) == {"header", "entries"}
    again = intake.from_cache(data)
    assert (again.revision, again.mesh_prefix, again.me) == (held.revision, held.mesh_prefix, held.me)
    assert decoded(again.entries) == decoded(held.entries)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"header": {}, "entries": {}}'])
def test_an_unreadable_cache_is_a_bad_netmap(data):
    with pytest.raises(intake.BadNetmap):
        intake.from_cache(data)


def test_node_id_of_a_raw_entry():
    assert intake.node_id_of(raw({"node_id": "a"})) == "a"
    assert intake.node_id_of(raw({"node_id": 1})) is None and intake.node_id_of(raw("a")) is None


ids = st.sampled_from([f"n{i}" for i in range(2, 9)])
ops = st.lists(st.tuples(st.booleans(), ids, st.booleans()), max_size=30)
KEYS = {f"n{i}": key() for i in range(2, 9)}


@given(ops)
def test_folding_deltas_yields_what_a_full_map_would(operations):
    """Any sequence of deltas folds to the same entries as one full map of the final membership."""
    members: dict[str, dict] = {}
    entries: dict = intake.fold({}, full(0, []))
    for revision, (upsert, node_id, online) in enumerate(operations, start=1):
        if upsert:
            members[node_id] = {**entry(node_id, f"100.64.0.{node_id[1:]}", online), "public_key": KEYS[node_id]}
            answer = delta(revision, revision - 1, [members[node_id]], [])
        else:
            members.pop(node_id, None)
            answer = delta(revision, revision - 1, [], [node_id])
        entries = intake.fold(entries, answer)
    assert decoded(entries) == decoded(intake.fold({}, full(len(operations), list(members.values()))))
    got = intake.netmap_of(intake.Received(0, PREFIX, netmap({}).me, entries))
    assert {p.node_id for p in got.peers} == set(members) and got.rejected == ()
