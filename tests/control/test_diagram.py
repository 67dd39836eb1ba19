"""The as-built diagram (control/cli/diagram.py, pure): what the control plane sees, drawn as DOT that
Graphviz accepts, node-controlled text unable to change the drawing."""
import shutil
import subprocess

import pytest

from control.cli.diagram import dot_quoted, mesh_dot, tunnels


def node(node_id: str, name: str, online: bool = True, ip: str = "100.64.0.1") -> dict:
    return {"node_id": node_id, "name": name, "mesh_ip": ip, "online": online}


NODES = [node("a1", "alpha", ip="100.64.0.1"), node("b2", "beta", ip="100.64.0.2"),
         node("c3", "gamma", ip="100.64.0.3"), node("d4", "delta", online=False, ip="100.64.0.4")]
DOWN = [{"nodes": ["b2", "a1"], "names": ["beta", "alpha"], "since": 1.0, "reason": "no handshake",
         "reported_by": ["a1"]}]


def test_every_pair_of_online_nodes_is_a_tunnel_and_a_reported_one_is_down_with_its_reason():
    drawn = {(t.a, t.b): t.reason for t in tunnels(NODES, DOWN)[0]}
    assert drawn == {("a1", "b2"): "no handshake", ("a1", "c3"): "", ("b2", "c3"): ""}


def test_a_reported_pair_with_an_offline_node_is_drawn_with_its_reason():
    down = [{"nodes": ["d4", "a1"], "names": [], "since": 1.0, "reason": "peer offline (delta)", "reported_by": []}]
    assert ("a1", "d4", "peer offline (delta)") in {(t.a, t.b, t.reason) for t in tunnels(NODES, down)[0]}


def test_the_dot_names_every_node_the_control_plane_and_the_counts():
    text = mesh_dot(NODES, DOWN, "https://10.0.0.1:8700", 12)
    assert 'label="alpha\\n100.64.0.1"' in text and "offline" in text
    assert "https://10.0.0.1:8700" in text and "revision 12" in text
    assert "3 of 4 nodes online, 2 tunnels up, 1 down" in text
    assert text.count(' -- control ') == 4 and 'label="no handshake"' in text


def test_repeated_names_are_marked():
    text = mesh_dot([node("a1", "twin"), node("b2", "twin", ip="100.64.0.2")], [], "http://c", 1)
    assert text.count("twin (*)") == 2


@pytest.mark.parametrize("hostile", ['x"; evil [label="owned"]; "', "a\\\"b", "line\nbreak\x1b[31m", "}{"])
def test_node_controlled_text_stays_inside_its_string(hostile):
    assert '"' not in dot_quoted(hostile).replace('\\"', "")
    text = mesh_dot([node("a1", hostile), node(hostile, "b", ip="100.64.0.2")], [], hostile, hostile)
    if shutil.which("dot"):  # Graphviz parses it as exactly the two nodes and the control plane
        done = subprocess.run(["dot", "-Tplain"], input=text, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert sum(line.startswith("node ") for line in done.stdout.splitlines()) == 3


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_renders_it_as_svg():
    done = subprocess.run(["dot", "-Tsvg"], input=mesh_dot(NODES, DOWN, "http://c", 3), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and "<svg" in done.stdout and "alpha" in done.stdout


def test_a_large_mesh_draws_the_tunnels_that_are_down_and_counts_the_rest():
    nodes = [{"node_id": f"n{i:04}", "name": f"node{i}", "mesh_ip": f"100.64.{i // 250}.{i % 250 + 1}",
              "online": True} for i in range(1000)]
    down = [{"nodes": ["n0001", "n0002"], "reason": "no handshake"}]
    drawn, up = tunnels(nodes, down)
    assert [(t.a, t.b, t.reason) for t in drawn] == [("n0001", "n0002", "no handshake")]
    assert up == 1000 * 999 // 2 - 1
    dot = mesh_dot(nodes, down, "https://control:8700", 7)
    assert len(dot) < 500_000 and "499499 tunnels up (not drawn), 1 down" in dot  # every pair: 31.6 MB
