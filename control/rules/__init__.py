"""Pure rules and data of the control plane: no I/O, no clock, no database (checked by a contract).

`ipam` (mesh IPs), `liveness` (when a node is offline), `netmap` (deltas), `tokens`, `reflexive`
(a request's source and the reflexive endpoint), `pair_health` (pairs without a working tunnel),
`records` (the plain data between the layers), `errors` (the domain's refusals).
"""
