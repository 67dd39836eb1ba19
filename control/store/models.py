"""Peewee models of the registry, bound to one DatabaseProxy.

Owns the table layout only. Queries live in `store/`, business rules in `registry.py`; the
schema is created by the numbered scripts in `migrations/`, never by `create_tables`.
"""
from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DoubleField,
    IntegerField,
    Model,
    TextField,
)

db = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class MeshState(BaseModel):
    """The single row (id 1) holding the membership revision and sweeper bookkeeping."""

    id = IntegerField(primary_key=True)
    revision = BigIntegerField(default=0)
    horizon = BigIntegerField(default=0)
    last_ip = CharField(max_length=45, null=True)  # the mesh IP allocated last
    last_sweep_at = DoubleField(null=True)
    grace_until = DoubleField(default=0)


class Node(BaseModel):
    id = CharField(primary_key=True, max_length=32)
    name = CharField(max_length=63)
    # Renamed by an admin: re-registrations keep the name. DEFAULT in SQL: see migration 0005.
    name_pinned = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    public_key = CharField(max_length=44, unique=True)
    mesh_ip = CharField(max_length=45, unique=True)
    endpoint = CharField(max_length=300, null=True)  # advertised by the node
    listen_port = IntegerField()
    reflexive_endpoint = CharField(max_length=300, null=True)  # where its requests come from, with its port
    token_hash = CharField(max_length=64, unique=True)
    created_at = DoubleField()
    last_seen = DoubleField()
    online = BooleanField(default=True)
    applied_revision = BigIntegerField(null=True)
    tunnels_down = TextField(default="[]")  # JSON: the peers its agent reports no working tunnel to
    changed_revision = BigIntegerField()
    agent_version = CharField(max_length=32, null=True)  # see migration 0006


class Change(BaseModel):
    """One row per node whose netmap-visible state changed at a revision."""

    id = AutoField()
    revision = BigIntegerField(index=True)
    node_id = CharField(max_length=32)


class JoinToken(BaseModel):
    id = CharField(primary_key=True, max_length=32)
    token_hash = CharField(max_length=64, unique=True)
    reusable = BooleanField(default=False)
    description = CharField(max_length=200, default="")
    created_at = DoubleField()
    expires_at = DoubleField(null=True)
    revoked_at = DoubleField(null=True)
    uses = IntegerField(default=0)


class ControlKey(BaseModel):
    """The single row (id 1) holding the control plane's X25519 private key, shared by all instances."""

    id = IntegerField(primary_key=True)
    private_key = CharField(max_length=44)
    created_at = DoubleField()


class Challenge(BaseModel):
    """An outstanding enrolment nonce: single-use, bound to the bearer that asked for it, short-lived."""

    nonce_hash = CharField(primary_key=True, max_length=64)
    token_hash = CharField(max_length=64, index=True)
    expires_at = DoubleField(index=True)
