"""What `meshctl` prints: API data made safe for a terminal, tables and change lines.

Owns output. Every value the API returns is data a node or an older or compromised server may
control: it is printed through `visible` (and `safe` for Rich), so it can neither drive the
terminal nor be read as Rich markup (JSON output escapes controls itself). Headers and fixed
words are ours. Pure but for `say`, `print_table` and `print_json`, which write to stdout.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from meshcommon.contract.terminal import visible


def safe(value: object) -> str:
    """`value` as Rich markup that prints it literally: controls made visible, markup escaped (pure)."""
    from rich.markup import escape
    return escape(visible(value))


def console() -> Any:
    from rich.console import Console
    return Console(width=200, emoji=False, highlight=False)  # ":name:" in a node name stays text


def say(markup: str) -> None:
    """Print one line of Rich markup whose API values went through `safe`, unwrapped (for scripts)."""
    console().print(markup, soft_wrap=True)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Headers are ours; every cell is API data, printed through `safe`."""
    from rich.table import Table
    table = Table(*headers, box=None, pad_edge=False)
    for row in rows:
        table.add_row(*(safe(cell) for cell in row))
    console().print(table)


def print_json(data: Any) -> None:
    """API data as indented JSON: every control character escaped by JSON itself."""
    print(json.dumps(data, indent=2))


def when(then: float | None) -> str:
    return "never" if then is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(then))


def ago(now: float, then: float | None) -> str:
    if then is None:
        return "-"
    seconds = max(0.0, now - then)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def duplicate_names(nodes: list[dict]) -> list[str]:
    """The names more than one node has, sorted (pure)."""
    seen = Counter(n["name"] for n in nodes)
    return sorted(name for name, count in seen.items() if count > 1)


def node_rows(nodes: list[dict], now: float) -> list[list[str]]:
    """One row per node; a name another node has too is marked with a trailing *."""
    duplicates = set(duplicate_names(nodes))
    return [[n["name"] + (" *" if n["name"] in duplicates else ""), n["mesh_ip"], n["public_key"][:10] + "…",
             n["endpoint"] or "-",
             n.get("reflexive_endpoint") or "-", "online" if n["online"] else "offline", ago(now, n["last_seen"]),
             "-" if n["applied_revision"] is None else str(n["applied_revision"]), n.get("agent_version") or "-",
             n["node_id"]]
            for n in nodes]


def pair_rows(pairs: list[dict], now: float, duplicates: frozenset[str] = frozenset()) -> list[list[str]]:
    """One row per pair; a name more than one node has (`duplicates`) is marked with a trailing *."""
    def name(text: str) -> str:
        return text + (" *" if text in duplicates else "")
    return [[name(p["names"][0]), name(p["names"][1]), ago(now, p["since"]), p["reason"],
             ", ".join(p["reported_by"]), " ".join(p["nodes"])] for p in pairs]


def token_rows(tokens: list[dict]) -> list[list[str]]:
    return [[t["id"], t["state"], "yes" if t["reusable"] else "no", str(t["uses"]), when(t["expires_at"]),
             t["description"]] for t in tokens]


def membership_changes(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Human lines for what changed between two node listings (pure)."""
    lines = []
    for node_id in sorted(set(before) | set(after)):
        old, new = before.get(node_id), after.get(node_id)
        if old is None and new is not None:
            lines.append(f"joined   {new['name']} {new['mesh_ip']} ({node_id})")
        elif new is None and old is not None:
            lines.append(f"removed  {old['name']} {old['mesh_ip']} ({node_id})")
        elif old is not None and new is not None:
            lines.append(changed_line(node_id, old, new))
    return [line for line in lines if line]


def changed_line(node_id: str, old: dict, new: dict) -> str:
    """The line for a node in both listings: online/offline, updated fields, or "" for no change."""
    if old["online"] != new["online"]:
        return f"{'online ' if new['online'] else 'offline'}  {new['name']} {new['mesh_ip']} ({node_id})"
    changed = [k for k in ("name", "endpoint", "public_key", "listen_port", "reflexive_endpoint")
               if old.get(k) != new.get(k)]
    return f"updated  {new['name']} {new['mesh_ip']} ({node_id}): {', '.join(changed)}" if changed else ""
