"""meshvpn control plane: the authoritative registry of mesh membership.

It hands out mesh IPs, tracks liveness from heartbeats and serves each node its
netmap. It never carries VPN traffic. Owns nothing itself: the layers, from `cli` down to the
pure modules, are written down and checked in .importlinter (the `control-*` contracts).
"""
