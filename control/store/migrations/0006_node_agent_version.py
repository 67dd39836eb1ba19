"""Each node's agent version, as its agent's User-Agent says when it registers (`meshctl nodes`).

`node.agent_version`: NULL until the node's agent registers again (agents before 0.3.0 send none).
Nullable, so an instance not upgraded yet (rolling upgrade) inserts nodes without it.
"""
from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column("node", "agent_version", CharField(max_length=32, null=True)))
