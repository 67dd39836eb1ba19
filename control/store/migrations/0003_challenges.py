"""Proof of key possession: the control plane's X25519 key and single-use enrolment challenges.

Frozen copies of the tables as they are at this migration, independent of `control.models`.
"""
from peewee import CharField, DoubleField, IntegerField, Model


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class ControlKey(Base):
        id = IntegerField(primary_key=True)
        private_key = CharField(max_length=44)
        created_at = DoubleField()

    class Challenge(Base):
        nonce_hash = CharField(primary_key=True, max_length=64)
        token_hash = CharField(max_length=64, index=True)
        expires_at = DoubleField(index=True)

    db.create_tables([ControlKey, Challenge])
