"""The as-built diagram: the running mesh, as the control plane sees it, in Graphviz DOT (pure).

Owns turning `GET /v1/nodes` and `GET /v1/mesh/health` answers into DOT text: every node with
its name and mesh IP (offline ones greyed, repeated names marked), the control plane it was read
from, and a tunnel for every pair of online nodes, red with the reason when the agents report it
down. Past `DRAW_ALL_UP_TO` online nodes only the tunnels that are down are drawn (the title counts
the rest): every pair is O(N^2), 31.6 MB of DOT at 1,000 nodes, which no one can read anyway.
No I/O: `meshctl diagram` fetches the answers and runs Graphviz for the SVG. Every string from the
API is quoted for DOT, so a node's data cannot change the drawing's structure.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations

import jinja2


@dataclass(frozen=True)
class Tunnel:
    a: str
    b: str
    reason: str  # empty when it works


def dot_quoted(value: object) -> str:
    """`value` for the inside of a DOT double-quoted string: backslashes and quotes escaped,
    line breaks and other control characters dropped."""
    text = "".join(ch for ch in str(value) if ch.isprintable())
    return text.replace("\\", "\\\\").replace('"', '\\"')


DRAW_ALL_UP_TO = 32  # online nodes; 496 tunnels at most, beyond that the working ones are counted only


def tunnels(nodes: list[dict], pairs: list[dict]) -> tuple[list[Tunnel], int]:
    """The tunnels to draw and how many work: every pair of online nodes (each keeps a tunnel to
    each) with the reason a reported pair is down, or past `DRAW_ALL_UP_TO` online nodes the
    reported ones only; a listed pair involving an offline node is drawn too (its reason tells why)."""
    down = {frozenset(pair["nodes"]): pair["reason"] for pair in pairs}
    online = sorted(node["node_id"] for node in nodes if node["online"])
    known = {node["node_id"] for node in nodes}
    reported = sorted((Tunnel(min(pair["nodes"]), max(pair["nodes"]), pair["reason"]) for pair in pairs
                       if set(pair["nodes"]) <= known), key=lambda tunnel: (tunnel.a, tunnel.b))
    up = len(online) * (len(online) - 1) // 2 - sum(1 for t in reported if {t.a, t.b} <= set(online))
    if len(online) > DRAW_ALL_UP_TO:
        return reported, up
    drawn = [Tunnel(a, b, down.get(frozenset((a, b)), "")) for a, b in combinations(online, 2)]
    return drawn + [t for t in reported if not {t.a, t.b} <= set(online)], up


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("control", "templates"), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["dotq"] = dot_quoted
    return env.get_template("mesh.dot.j2")


def mesh_dot(nodes: list[dict], pairs: list[dict], control: str, revision: object) -> str:
    """DOT text of the mesh: `nodes` as `GET /v1/nodes` lists them, `pairs` as `GET /v1/mesh/health`."""
    repeated = {name for name, count in Counter(node["name"] for node in nodes).items() if count > 1}
    ordered = sorted(nodes, key=lambda node: (str(node["name"]), str(node["node_id"])))
    shown = [{"id": node["node_id"], "name": node["name"], "mesh_ip": node["mesh_ip"], "online": node["online"],
              "duplicate": node["name"] in repeated} for node in ordered]
    links, up = tunnels(nodes, pairs)
    broken = sum(1 for tunnel in links if tunnel.reason)
    online = sum(1 for node in nodes if node["online"])
    hidden = " (not drawn)" if online > DRAW_ALL_UP_TO else ""
    title = (f"meshvpn at revision {revision}: {online} of {len(nodes)} nodes online, "
             f"{up} tunnels up{hidden}, {broken} down")
    return _template().render(nodes=shown, tunnels=links, control=control, revision=revision, title=title)
