"""What meshctl prints: API text made inert, and the lines of `meshctl watch` (pure)."""
from control.cli.console import (
    ago,
    duplicate_names,
    membership_changes,
    node_rows,
    pair_rows,
    safe,
    token_rows,
    visible,
)

MARKUP, ESCAPE = "[bold red]x[/]", "\x1b[31m"


def test_visible_shows_every_terminal_control_and_safe_escapes_markup():
    controls = [chr(c) for c in (*range(0x20), 0x7f, *range(0x80, 0xa0))]
    assert visible("".join(controls)) == "".join(f"\\x{ord(c):02x}" for c in controls)
    assert visible("ümlaut [ok] 100.64.0.1") == "ümlaut [ok] 100.64.0.1"
    assert safe(MARKUP + ESCAPE) == "\\[bold red]x\\[/]\\x1b[31m"


def node(name: str = "a", **extra) -> dict:
    return {"node_id": "n1", "name": name, "mesh_ip": "100.64.0.1", "public_key": "K" * 43 + "=",
            "endpoint": None, "listen_port": 51820, "online": True, "last_seen": 100.0, "applied_revision": None,
            **extra}


def test_watch_lines_say_joined_removed_online_offline_and_updated():
    assert membership_changes({}, {"n1": node()}) == ["joined   a 100.64.0.1 (n1)"]
    assert membership_changes({"n1": node()}, {}) == ["removed  a 100.64.0.1 (n1)"]
    assert membership_changes({"n1": node()}, {"n1": node(online=False)}) == ["offline  a 100.64.0.1 (n1)"]
    assert membership_changes({"n1": node(online=False)}, {"n1": node()}) == ["online   a 100.64.0.1 (n1)"]
    moved = node("b", endpoint="192.0.2.1:51820")
    assert membership_changes({"n1": node()}, {"n1": moved}) == ["updated  b 100.64.0.1 (n1): name, endpoint"]
    rebound = node(reflexive_endpoint="198.51.100.7:51820")
    assert membership_changes({"n1": node()}, {"n1": rebound}) == ["updated  a 100.64.0.1 (n1): reflexive_endpoint"]
    assert membership_changes({"n1": node()}, {"n1": node(last_seen=200.0)}) == []


def test_node_rows_and_ages():
    assert node_rows([node()], now=130.0) == [["a", "100.64.0.1", "KKKKKKKKKK…", "-", "-", "online", "30s ago", "-",
                                                "-", "n1"]]
    assert node_rows([node(agent_version="0.3.0")], now=130.0)[0][-2] == "0.3.0"
    natted = node(endpoint="192.168.1.2:51820", reflexive_endpoint="198.51.100.7:51820")
    assert node_rows([natted], now=130.0)[0][3:5] == ["192.168.1.2:51820", "198.51.100.7:51820"]
    assert (ago(1000.0, None), ago(1000.0, 1000.0 - 600)) == ("-", "10m ago")


def test_names_more_than_one_node_has_are_marked():
    nodes = [node(node_id="n1", name="a"), node(node_id="n2", name="b"), node(node_id="n3", name="a")]
    assert duplicate_names(nodes) == ["a"]
    assert [row[0] for row in node_rows(nodes, now=130.0)] == ["a *", "b", "a *"]


def test_pair_rows_name_both_nodes_since_when_and_why():
    pair = {"nodes": ["n1", "n2"], "names": ["a", "b"], "since": 100.0, "reason": "nothing received",
            "reported_by": ["n1"]}
    assert pair_rows([pair], now=130.0) == [["a", "b", "30s ago", "nothing received", "n1", "n1 n2"]]


def test_pair_rows_mark_a_name_another_node_has_too():
    pair = {"nodes": ["n1", "n2"], "names": ["db", "web"], "since": 100.0, "reason": "no handshake",
            "reported_by": ["n2"]}
    assert pair_rows([pair], now=130.0, duplicates=frozenset({"db"}))[0][:2] == ["db *", "web"]


def test_token_rows():
    token = {"id": "t1", "state": "active", "reusable": True, "uses": 2, "expires_at": None, "description": "ci"}
    assert token_rows([token]) == [["t1", "active", "yes", "2", "never", "ci"]]
