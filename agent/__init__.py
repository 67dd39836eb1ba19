"""meshvpn node agent: turns the control plane's membership into a live WireGuard mesh.

Compute (pure: netmap.py, desired.py, render.py, diff.py) is kept apart from
effects (observe.py, apply.py, wg.py, state.py, client.py); loop.py ties them.
"""
