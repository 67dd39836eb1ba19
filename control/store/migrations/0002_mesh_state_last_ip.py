"""Add `mesh_state.last_ip`, the mesh IP allocated last, when it is missing.

Released 0001 had no such column, but for a while 0001 was edited in place to
create it, so databases made by that edit already have it: add it only when it
is absent. Where it is added, start it at the highest mesh IP a node holds, so
allocation keeps moving upward instead of handing out a freed address first.
"""
import ipaddress

from peewee import CharField, Table


def highest_ip(mesh_ips):
    """The highest address of `mesh_ips`, or None when there is none (pure)."""
    addresses = [ipaddress.ip_address(ip) for ip in mesh_ips]
    if not addresses:
        return None
    return str(max(addresses, key=lambda a: (a.version, int(a))))


def up(migrator, db):
    if "last_ip" in {column.name for column in db.get_columns("mesh_state", migrator.schema)}:
        return
    migrator.migrate(migrator.add_column("mesh_state", "last_ip", CharField(max_length=45, null=True)))
    node, mesh_state = Table("node").bind(db), Table("mesh_state").bind(db)
    last = highest_ip(row[0] for row in node.select(node.c.mesh_ip).tuples())
    mesh_state.update({mesh_state.c.last_ip: last}).where(mesh_state.c.id == 1).execute()
