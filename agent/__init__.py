"""meshvpn node agent: turns the control plane's membership into a live WireGuard mesh.

Owns nothing itself; its modules own one thing each. Compute is pure (`intake`, `paths`, `health`,
`desired`, `render`, `diff`, `changes`, `status_view`, `settings`, `uapi`, over the data of `model`),
kept apart from effects
(`client`, `session`, `observe`, `apply`, `wg`, `state`, `reconcile`, `status`); `agent.Agent`
wires them and `cli` is the command line. `.importlinter` checks that the pure ones import no effect.
"""
