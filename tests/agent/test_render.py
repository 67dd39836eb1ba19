"""Rendering: a valid `wg syncconf` file, and no netmap content, however hostile, makes it hold anything
but the intended peers: every line is one the agent means to write, every peer a validated entry."""
import ipaddress
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.desired import desired_state
from agent.core.render import render
from meshcommon.contract import endpoint, keys
from tests.agent.data import entry, key, netmap

PREFIX = "100.64.0.0/24"
ME = {**entry("me", "100.64.0.1"), "endpoint": None}
KEYS = [keys.public_key_of(keys.new_private_key()) for _ in range(8)]
LINE = re.compile(r"(#[^\n]*|\[Interface\]|\[Peer\]|PrivateKey = PRIVATE|ListenPort = 51820|"
                  r"PublicKey = [A-Za-z0-9+/]{43}=|AllowedIPs = 100\.64\.0\.\d{1,3}/32|"
                  r"Endpoint = \S+|PersistentKeepalive = 25|)")
nasty_text = st.text(alphabet=st.sampled_from("a1.:[]%\n\r\t =#/\\\x00\x1b\u2028\u0085[Peer]"), max_size=40)
anything = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text
good_entries = st.lists(st.tuples(st.integers(2, 120), st.sampled_from(KEYS)), max_size=6,
                        unique_by=(lambda t: t[0], lambda t: t[1]))
junk_entries = st.lists(st.fixed_dictionaries({
    "node_id": anything, "name": anything | nasty_text,
    "public_key": anything | st.sampled_from([*KEYS, ME["public_key"]]),
    "mesh_ip": anything | st.sampled_from(["100.64.0.7", "100.64.0.0", "100.64.0.255", "10.0.0.1", "100.64.0.1"]),
    "endpoint": anything | st.sampled_from(["1.2.3.4:5\n[Peer]", "evil.example:51820", "192.0.2.1:51820"]),
    "listen_port": anything, "online": anything}), max_size=6)


def test_render_is_a_valid_syncconf_file():
    conf = render(desired_state(netmap({"a": entry("a", "100.64.0.2")}, revision=7), "mesh0", 51000), "PRIVATE", 7)
    assert conf.startswith("# meshvpn: written by meshagent for mesh0 at revision 7; do not edit.\n")
    assert "[Interface]\nPrivateKey = PRIVATE\nListenPort = 51000\n" in conf
    assert "AllowedIPs = 100.64.0.2/32\nEndpoint = 10.9.0.2:51820\nPersistentKeepalive = 25\n" in conf


def test_a_peer_without_an_endpoint_gets_no_endpoint_line():
    conf = render(desired_state(netmap({"a": entry("a", "100.64.0.2", endpoint=None)}), "mesh0", 51820), "P", 1)
    assert "Endpoint" not in conf and conf.count("[Peer]") == 1


def test_a_name_can_never_inject_config_lines():
    evil = entry("x", "100.64.0.9", name="x\n[Peer]\nPublicKey = " + key())
    got = netmap({"x": evil})
    conf = render(desired_state(got, "mesh0", 51820), "PRIVATE", got.revision)
    assert conf.count("[Peer]") == 1 and conf.count("PublicKey") == 1
    assert "# ?" in conf


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(good_entries, junk_entries)
def test_rendered_config_holds_exactly_the_validated_peers(good, junk):
    entries: dict[str, object] = {
        f"a{ip:03d}": {"node_id": f"a{ip:03d}", "name": f"n{ip}", "mesh_ip": f"100.64.0.{ip}", "public_key": k,
                       "endpoint": f"192.0.2.{ip}:51820", "listen_port": 51820, "online": True}
        for ip, k in good}
    for i, junk_entry in enumerate(junk):  # junk sorts after the good entries, so it never takes their IPs
        entries[f"z{i}"] = junk_entry
    got = netmap(entries, revision=3, me=ME, prefix=PREFIX)
    conf = render(desired_state(got, "mesh0", 51820), "PRIVATE", got.revision)

    assert all(LINE.fullmatch(line) for line in conf.split("\n")), conf
    blocks = conf.split("[Peer]\n")[1:]
    rendered = {}
    for block in blocks:
        fields = dict(line.split(" = ", 1) for line in block.splitlines() if " = " in line)
        assert set(fields) <= {"PublicKey", "AllowedIPs", "Endpoint", "PersistentKeepalive"}
        assert fields["PublicKey"] not in rendered and fields["PublicKey"] != ME["public_key"]
        rendered[fields["PublicKey"]] = fields
        if "Endpoint" in fields:
            endpoint.parse(fields["Endpoint"])  # only numeric unicast endpoints are ever written
    assert {k for _, k in good} <= set(rendered)  # every intended peer is there...
    valid_ips = {ipaddress.ip_address(f["AllowedIPs"].split("/")[0]) for f in rendered.values()}
    assert len(valid_ips) == len(rendered)  # ...no mesh IP twice...
    assert set(rendered) == {p.public_key for p in got.peers if p.online}  # ...and nothing unvalidated
    for peer in got.peers:
        assert keys.is_valid_public_key(peer.public_key) and peer.node_id != "me"
