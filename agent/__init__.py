"""meshvpn node agent: turns the control plane's membership into a live WireGuard mesh.

Owns nothing itself; its modules own one thing each. Compute is pure, in `core/` (intake,
desired state, rendering, diff, changes, endpoint candidates, health, pacing, status view, metrics,
settings, the UAPI text, over the data of `core.model`), kept apart from the effects here
(`client`, `session`, `observe`, `apply`, `wg`, `statedir`, `netmap_cache`, `reconcile`, `local_api`); `agent.Agent`
wires them and `cli` is the command line. `.importlinter` checks that `core/` imports no effect.
Done here, before any of them loads: what the agent never uses is kept out of its memory
(`meshcommon/plumbing/trim_imports.py`).
"""
from meshcommon.plumbing.trim_imports import pyroute2_on_demand, without_httpx_command_line

without_httpx_command_line()  # click, rich and pygments: 4.7 MB every agent kept
pyroute2_on_demand()  # the rest of pyroute2 (conntrack, ipset, ndb, plan9...): 6.8 MB
