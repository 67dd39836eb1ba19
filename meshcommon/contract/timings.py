"""The timings that say whether a WireGuard tunnel works, shared by the agent (which judges) and the
control plane (which shows the bound operators read its health answers by). Pure constants.

WireGuard's own: a session lives REJECT_AFTER_TIME (180 s) and is renewed every REKEY_AFTER_TIME
(120 s) while traffic flows; with a persistent keepalive every KEEPALIVE seconds each side sends
something at least that often, so a working tunnel receives something every KEEPALIVE seconds.
"""
from __future__ import annotations

KEEPALIVE = 25  # seconds: PersistentKeepalive of every peer; keeps NAT mappings open
HANDSHAKE_FRESH = 180.0  # seconds: a handshake younger than this is a live session (REJECT_AFTER_TIME)
# Seconds without anything received (or without a handshake, for a new peer) before a tunnel counts
# as down: a little over two keepalive intervals, so one lost keepalive never raises an alarm.
HEALTH_BOUND = 60.0
