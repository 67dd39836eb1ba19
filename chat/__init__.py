"""meshchat: peer-to-peer messages over mesh IPs, proving the data plane to a person watching.

Messages go straight to the peer's mesh IP (WireGuard authenticates the source
address); the control plane is never involved. The peer list comes from the
local agent's status, so chat keeps working while the control plane is down.
"""
