"""Join tokens: the SQL of the `join_token` table.

Owns how join tokens are stored: only a token's SHA-256, never the token. The rules of their use
are `control/registry/join_tokens.py`'s.
"""
from __future__ import annotations

from typing import Any

import msgspec

from control.rules.records import JoinTokenRecord
from control.store import dicts
from control.store.models import JoinToken

COLUMNS = [getattr(JoinToken, name) for name in JoinTokenRecord.__struct_fields__]  # all but the hash


def _first(query: Any) -> JoinTokenRecord | None:
    found = dicts(query)
    return JoinTokenRecord(**found[0]) if found else None


def get(token_id: str) -> JoinTokenRecord | None:
    return _first(JoinToken.select(*COLUMNS).where(JoinToken.id == token_id))


def by_hash(token_hash: str) -> JoinTokenRecord | None:
    return _first(JoinToken.select(*COLUMNS).where(JoinToken.token_hash == token_hash))


def every() -> list[JoinTokenRecord]:
    """All join tokens, oldest first."""
    return [JoinTokenRecord(**row) for row in dicts(JoinToken.select(*COLUMNS).order_by(JoinToken.created_at))]


def add(token: JoinTokenRecord, token_hash: str) -> None:
    JoinToken.insert(**msgspec.structs.asdict(token), token_hash=token_hash).execute()


def use(token_id: str) -> bool:
    """Count one use, unless the token is single-use and used already: of concurrent users of a
    single-use token, one wins (a conditional update). False for the others."""
    return bool(JoinToken.update(uses=JoinToken.uses + 1)
                .where((JoinToken.id == token_id) & (JoinToken.reusable | (JoinToken.uses == 0)))
                .execute())


def revoke(token_id: str, now: float) -> None:
    JoinToken.update(revoked_at=now).where(JoinToken.id == token_id).execute()
