"""meshvpn node agent: turns the control plane's membership into a live WireGuard mesh.

Owns nothing itself; its modules own one thing each. Compute is pure (`intake`, `paths`, `health`,
`desired`, `render`, `diff`, `changes`, `status_view`, `settings`, `uapi`, over the data of `model`),
kept apart from effects
(`client`, `session`, `observe`, `apply`, `wg`, `state`, `reconcile`, `status`); `agent.Agent`
wires them and `cli` is the command line. `.importlinter` checks that the pure ones import no effect.
The one thing done here, before any of them loads: httpx's command line is kept out of the process.
"""
from meshcommon.lean import without_httpx_command_line

without_httpx_command_line()  # click, rich and pygments: 4.7 MB every agent kept (meshcommon/lean.py)
