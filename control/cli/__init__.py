"""`meshctl`: the operator's command line (the top layer of the control plane).

Parses commands, speaks the HTTP API with the admin token (`admin_client`), prints through
`console` (API data made safe for a terminal) and draws the as-built diagram (`diagram`, pure).
`meshctl serve` and `migrate` hand over to `control.serve`. May import every layer below; nothing
imports it.
"""
