"""The agent's pure core: data in, data or text out, no I/O (checked by a contract on the folder).

`model` (the data), `intake` (validating netmaps), `desired` (the WireGuard state to reach),
`render` (the config file), `diff` (observed against desired), `changes` (what a pass changed, for
the log), `endpoints` (which endpoint of a peer to try), `health` (which tunnels work), `pacing`
(how long to wait), `status_view` and `metrics` (what status and Prometheus show), `settings`,
`uapi` (wireguard-go's protocol as text). The effects above it import it; it imports none of them.
"""
