"""The address a node's requests come from, and the tunnels its agent reports down (issue 10).

`node.reflexive_endpoint`: the source address the control plane sees a node's requests come from,
with the node's WireGuard port, offered to peers beside the advertised endpoint (NAT traversal).
`node.tunnels_down`: JSON list of the peers the node's agent reports no working tunnel to, with
since when and why; replaces `node.peer_health` (every peer's handshake age, O(N) per heartbeat).
"""
from peewee import CharField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("node", "reflexive_endpoint", CharField(max_length=300, null=True)),
        migrator.add_column("node", "tunnels_down", TextField(default="[]")),
        migrator.drop_column("node", "peer_health"),
    )
