"""meshchat: peer-to-peer messages over mesh IPs, proving the data plane to a person watching.

Owns the chat demo, one module per concern: `protocol` (frames), `transport` (connections),
`peers` (the peer list), `store` (history), `daemon` (message states), `guard` and `web`
(the browser UI), `cli` (`meshchat`). It imports only `meshcommon`, never the agent or the
control plane.

Messages go straight to the peer's mesh IP (WireGuard authenticates the source
address); the control plane is never involved. The peer list comes from the
local agent's status, so chat keeps working while the control plane is down.
Before any part loads, httpx's command line is kept out of the process (`meshcommon/plumbing/trim_imports.py`).
"""
from meshcommon.plumbing.trim_imports import without_httpx_command_line

without_httpx_command_line()  # rich and pygments: 4.2 MB every chat daemon kept (meshcommon/plumbing/trim_imports.py)
