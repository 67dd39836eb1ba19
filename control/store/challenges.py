"""Enrolment nonces and the control key: the SQL of the `challenge` and `control_key` tables.

Owns how nonces and the key are stored; the rules of proof are `control/registry/challenges.py`'s.
Nonces are stored by their SHA-256, with the token hash they were issued to and their expiry.
"""
from __future__ import annotations

from control.store.models import Challenge, ControlKey


def control_key(candidate: str, now: float) -> str:
    """The stored control private key; `candidate` becomes it when there is none yet (first wins)."""
    ControlKey.insert(id=1, private_key=candidate, created_at=now).on_conflict_ignore().execute()
    return ControlKey.get_by_id(1).private_key


def purge_expired(now: float) -> None:
    Challenge.delete().where(Challenge.expires_at <= now).execute()


def outstanding(token_hash: str) -> int:
    return Challenge.select().where(Challenge.token_hash == token_hash).count()


def add(nonce_hash: str, token_hash: str, expires_at: float) -> None:
    Challenge.insert(nonce_hash=nonce_hash, token_hash=token_hash, expires_at=expires_at).execute()


def redeem(nonce_hash: str, token_hash: str, now: float) -> bool:
    """Delete the nonce if it is outstanding, was issued to `token_hash` and has not expired."""
    return bool(Challenge.delete().where(
        (Challenge.nonce_hash == nonce_hash) & (Challenge.token_hash == token_hash)
        & (Challenge.expires_at > now)).execute())
