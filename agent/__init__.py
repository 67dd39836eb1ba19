"""meshvpn node agent: turns the control plane's membership into a live WireGuard mesh.

Owns nothing itself; its modules own one thing each. Compute is pure (`intake`, `paths`, `health`,
`desired`, `render`, `diff`, `changes`, `status_view`, `settings`, `uapi`, over the data of `model`),
kept apart from effects
(`client`, `session`, `observe`, `apply`, `wg`, `state`, `reconcile`, `status`); `agent.Agent`
wires them and `cli` is the command line. `.importlinter` checks that the pure ones import no effect.
The one thing done here, before any of them loads: httpx's command line is kept out of the process.
"""
import sys

# httpx imports its command line (`httpx._main`: click, rich and pygments, 4.7 MB that every agent
# kept) whenever those are installed, and on a meshvpn host they are (uvicorn needs click, meshctl
# rich). The agent never runs it; a module marked absent is an ImportError, on which httpx defines
# a stub `main` instead (its own fallback for installs without the `cli` extra).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
