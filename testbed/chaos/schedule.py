"""The chaos soak's schedule: which faults, on whom, when. Pure: the same seed and the same
arguments always give the same list (a failure is replayed from its seed).

Owns the fault kinds, what each one targets and how long it holds, and how faults combine: at most
`max_live` at once, a node in at most one fault at a time (a pair cut holds both of its nodes),
never more than all nodes but two faulted (so some pair always stays whole), at most one fault of
the control plane at a time, and no fault left live in the last `settle` seconds (the mesh must
converge before the run ends). Must not touch a lab: the runner applies what this decides.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Literal

Scope = Literal["node", "pair", "control", "join"]


@dataclass(frozen=True)
class Kind:
    scope: Scope
    hold: tuple[float, float]  # how long the fault lasts, in offline thresholds (min, max)
    weight: float = 1.0
    needs_ha: bool = False  # only with two control instances on PostgreSQL


# Holds are in offline thresholds: some faults must outlast it (the node goes offline and comes
# back), others must not (nothing may change), and many straddle it on purpose.
KINDS: dict[str, Kind] = {
    "agent_crash": Kind("node", (0.2, 2.0), 2.0),        # SIGKILL, restarted after the hold
    "power_off": Kind("node", (0.5, 3.0), 1.5),          # the agent and its WireGuard gone, back after
    "pair_cut": Kind("pair", (0.5, 4.0), 2.0),           # UDP between two nodes dropped both ways
    "loss_one_way": Kind("node", (0.5, 3.0), 1.0),       # a share of what the node receives dropped
    "loss_two_way": Kind("node", (0.5, 3.0), 1.0),       # ... and of what it sends
    "control_isolated": Kind("node", (0.5, 3.0), 1.0),   # the node cannot reach the control plane
    "readdress": Kind("node", (0.0, 0.0), 0.5),          # re-registers from another underlay address
    "leave": Kind("node", (0.5, 3.0), 0.5),              # leaves the mesh, joins again after the hold
    "join": Kind("join", (0.0, 0.0), 0.5),               # a new node joins (and stays)
    "control_restart": Kind("control", (0.1, 1.0), 1.0),  # SIGKILL, restarted after the hold
    "control_cut_all": Kind("control", (1.2, 2.5), 0.5),  # every node cut from it past the threshold
    "control_instance_lost": Kind("control", (0.5, 3.0), 1.0, needs_ha=True),
    "pg_restart": Kind("control", (0.1, 1.0), 0.5, needs_ha=True),
}


@dataclass(frozen=True)
class Fault:
    t: float  # seconds from the start of the run
    kind: str
    target: str  # a node, "a,b" for a pair, "control" or the name a joining node takes
    hold: float  # seconds until it is healed (0: a single action)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The existing nodes this fault holds."""
        scope = KINDS[self.kind].scope
        return tuple(self.target.split(",")) if scope in ("node", "pair") else ()

    @property
    def until(self) -> float:
        return self.t + self.hold

    def to_json(self) -> dict:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


def kinds_for(ha: bool, only: list[str] | None = None) -> list[str]:
    """The kinds a run may draw: `only` (all when None; none when empty), less those that need two
    control instances."""
    names = list(KINDS) if only is None else only
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds: {', '.join(unknown)} (known: {', '.join(KINDS)})")
    return [name for name in names if ha or not KINDS[name].needs_ha]


def schedule(seed: int, duration: float, nodes: list[str], threshold: float, kinds: list[str],
             max_live: int = 3, mean_gap: float = 6.0, start: float = 5.0, settle: float | None = None) -> list[Fault]:
    """The faults of a run, in order of their start. `threshold`: the control plane's offline
    threshold (holds are drawn in thresholds); `mean_gap`: the mean time between two draws."""
    if len(nodes) < 3:
        raise ValueError("a chaos run needs at least 3 nodes (some pair always stays whole)")
    settle = 3 * threshold if settle is None else settle
    rng = random.Random(seed)
    faults: list[Fault] = []
    joined = 0
    t = start
    while t < duration - settle:
        t = round(t, 3)
        left = duration - settle - t  # a fault must heal before the run settles
        live = [fault for fault in faults if fault.until > t]
        if len(live) < max_live:
            busy = {node for fault in live for node in fault.nodes}
            control_busy = any(KINDS[fault.kind].scope == "control" for fault in live)
            targets = {kind: _targets(kind, nodes, busy, control_busy, f"join{joined + 1}") for kind in kinds
                       if KINDS[kind].hold[0] * threshold <= left}
            choices = [kind for kind in targets if targets[kind]]
            if choices:  # a kind by its weight, then one of its targets
                kind = rng.choices(choices, weights=[KINDS[kind].weight for kind in choices])[0]
                target = rng.choice(targets[kind])
                low, high = KINDS[kind].hold
                hold = min(round(rng.uniform(low, high) * threshold, 3), math.floor(left * 1000) / 1000)
                faults.append(Fault(t, kind, target, hold))
                if KINDS[kind].scope == "join":
                    joined += 1
        t += rng.expovariate(1 / mean_gap)
    return faults


def _targets(kind: str, nodes: list[str], busy: set[str], control_busy: bool, new_name: str) -> list[str]:
    scope = KINDS[kind].scope
    free = [node for node in nodes if node not in busy]
    if scope == "control":
        return [] if control_busy else ["control"]
    if scope == "join":
        return [new_name]
    spare = len(nodes) - 2 - len(busy)  # nodes that may still be faulted, keeping a pair whole
    if scope == "pair":
        return [f"{a},{b}" for i, a in enumerate(free) for b in free[i + 1:]] if spare >= 2 else []
    return free if spare >= 1 else []
