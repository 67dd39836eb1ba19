"""An admin's rename of a node outlasts the node's re-registrations (issue 12).

`node.name_pinned`: true once an admin renamed the node (PATCH /v1/nodes/{id}); its agent's
re-registrations then keep that name instead of the one the agent was started with. A default in
SQL too: an instance not upgraded yet (rolling upgrade) inserts nodes without the column.
"""
from peewee import SQL, BooleanField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("node", "name_pinned", BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])))
