"""How long the agent waits: between tries, for a heartbeat's answer, before it reconnects, between
reconcile passes and between writes of its netmap cache. Pure.

Owns the caps of the session's backoff (`meshcommon.plumbing.backoff`) and a heartbeat's timeout,
each sized so that an enrolled node is never declared offline by a control plane that is back.
"""
from __future__ import annotations

from agent.core.model import Identity

ENROLLING_CAP = 10.0  # s: the longest wait between attempts of a node not enrolled yet
REFUSED_CAP = 30.0  # s: after a refusal (4xx, no join token): a person has to act first
WATCH_CAP = 5.0  # s: between reconnections of the netmap stream
HEARTBEAT_TIMEOUT_FLOOR, HEARTBEAT_TIMEOUT_CAP = 0.5, 10.0  # s: one heartbeat's wait for its answer
CACHE_EVERY = 1.0  # s: between writes of the netmap cache, at least (a restart asks for what it missed)
PASS_EVERY = 0.1  # s: between reconcile passes, at least, while netmaps keep coming (one pass takes them all)


def retry_cap(identity: Identity | None) -> float:
    """How long to back off at most: an enrolled node must be back within the control
    plane's grace period after an outage, so it never waits past a third of the offline
    threshold; a node still enrolling can wait longer."""
    return identity.offline_after / 3 if identity else ENROLLING_CAP


def heartbeat_timeout(identity: Identity) -> float:
    """How long one heartbeat may wait for its answer (the client's own timeouts are sized for the
    netmap stream, far longer). When a control host goes silent (lost, not refusing), the last
    heartbeat it answered may never have been stored and the next one times out; the retry, at
    once to the next control URL, must still arrive within the offline threshold:
    2 intervals + this timeout + a round trip. Half of what remains: 1 s with the defaults."""
    slack = identity.offline_after - 2 * identity.heartbeat_interval
    return min(HEARTBEAT_TIMEOUT_CAP, max(HEARTBEAT_TIMEOUT_FLOOR, slack / 2))
