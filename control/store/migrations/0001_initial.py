"""Initial schema: mesh state, nodes, change log, join tokens.

Frozen copies of the models as they were at this migration, independent of
`control.models`, so later model changes never rewrite history.
"""
from peewee import (AutoField, BigIntegerField, BooleanField, CharField, DoubleField,
                    IntegerField, Model, TextField)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class MeshState(Base):
        id = IntegerField(primary_key=True)
        revision = BigIntegerField(default=0)
        horizon = BigIntegerField(default=0)
        last_sweep_at = DoubleField(null=True)
        grace_until = DoubleField(default=0)

    class Node(Base):
        id = CharField(primary_key=True, max_length=32)
        name = CharField(max_length=63)
        public_key = CharField(max_length=44, unique=True)
        mesh_ip = CharField(max_length=45, unique=True)
        endpoint = CharField(max_length=300, null=True)
        listen_port = IntegerField()
        token_hash = CharField(max_length=64, unique=True)
        created_at = DoubleField()
        last_seen = DoubleField()
        online = BooleanField(default=True)
        applied_revision = BigIntegerField(null=True)
        peer_health = TextField(default="[]")
        changed_revision = BigIntegerField()

    class Change(Base):
        id = AutoField()
        revision = BigIntegerField(index=True)
        node_id = CharField(max_length=32)

    class JoinToken(Base):
        id = CharField(primary_key=True, max_length=32)
        token_hash = CharField(max_length=64, unique=True)
        reusable = BooleanField(default=False)
        description = CharField(max_length=200, default="")
        created_at = DoubleField()
        expires_at = DoubleField(null=True)
        revoked_at = DoubleField(null=True)
        uses = IntegerField(default=0)

    db.create_tables([MeshState, Node, Change, JoinToken])
    MeshState.create(id=1, revision=0, horizon=0)
