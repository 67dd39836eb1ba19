"""docs/events.md lists every event any process logs: the names are read from the source, so the
page cannot fall behind it."""
import ast
import re
from pathlib import Path

from agent.core.changes import CHANGE_KINDS
from meshcommon.plumbing.events import LIBRARY_EVENT

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("control", "agent", "chat", "meshcommon")
# `emit(name, ...)` whose name is no string literal: what the name is made of instead.
DYNAMIC = {"change.kind.value": {kind.value for kind in CHANGE_KINDS}}
OUTAGE_EVENTS = ("self.failed_event", "self.restored_event")  # control/live/outage.py: named by `Outage(...)` calls


def outage_events(tree: ast.AST) -> set[str]:
    """The event names an `Outage(failed, restored)` call passes on, as string literals."""
    return {arg.value for call in ast.walk(tree)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Outage"
            for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}


def logged_events() -> dict[str, str]:
    """Every event name an `emit` call can log -> where (file:line)."""
    found: dict[str, str] = {}
    trees = {path: ast.parse(path.read_text(), str(path))
             for part in PARTS for path in sorted((ROOT / part).rglob("*.py"))}
    dynamic = DYNAMIC | dict.fromkeys(OUTAGE_EVENTS, set().union(*map(outage_events, trees.values())))
    for path, tree in trees.items():
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "emit"
                    and call.args):
                continue
            name = call.args[0]
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            literals = {node.value for node in ast.walk(name)
                        if isinstance(node, ast.Constant) and isinstance(node.value, str)}
            names = literals or dynamic.get(ast.unparse(name))
            assert names, f"{where}: emit({ast.unparse(name)}, ...): add how its names are found to DYNAMIC"
            found.update(dict.fromkeys(names, where))
    return found | {LIBRARY_EVENT: "meshcommon/plumbing/events.py"}


def documented_events() -> set[str]:
    """The names in the first column of the "| Event |" tables of docs/events.md (`a` / `b` rows name two)."""
    names: set[str] = set()
    table = None
    for line in (ROOT / "docs" / "events.md").read_text().splitlines():
        if not line.startswith("|"):
            table = None
        elif table is None:
            table = line.split("|")[1].strip()
        elif table == "Event":
            names.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def test_every_event_logged_is_documented():
    missing = {name: where for name, where in logged_events().items() if name not in documented_events()}
    assert not missing, f"events missing from docs/events.md: {missing}"


def test_every_event_documented_is_logged():
    assert documented_events() - set(logged_events()) == set()


def test_the_scan_finds_events_of_every_kind():
    events = logged_events()
    assert {"node_registered", "peer_added", "control_restored", "control_connected", "chat_delivered",
            "library_log"} <= set(events)
