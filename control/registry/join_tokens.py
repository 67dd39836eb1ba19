"""Join tokens: who may enrol a node, how often and until when.

Owns the life of a join token: created by the admin (the secret is shown once, only its hash is
stored), used once or many times, expiring and revoked; and the check of a bearer against it, with
the one refusal message for each state. SQL in `store/join_tokens.py`. Blocking, like the registry
it belongs to.
"""
from __future__ import annotations

from collections.abc import Callable

import msgspec

from control.rules import tokens
from control.rules.errors import NotFound, Unauthorized
from control.rules.records import JoinTokenRecord, JoinTokenRequest, JoinTokenStatus
from control.store import db as database
from control.store import join_tokens as rows
from meshcommon.plumbing.events import emit

REFUSED = {"revoked": "join token was revoked", "expired": "join token has expired",
           "used": "single-use join token was already used"}


class JoinTokens:
    def __init__(self, clock: Callable[[], float], make_id: Callable[[], str]):
        self.clock = clock
        self.make_id = make_id

    @staticmethod
    def usable(bearer: str, now: float) -> JoinTokenRecord:
        """The join token `bearer` is, if it admits a node at `now`; else Unauthorized, saying why."""
        token = rows.by_hash(tokens.digest(bearer))
        if token is None:
            raise Unauthorized("unknown join token")
        state = token.state_at(now)
        if state != "active":
            raise Unauthorized(REFUSED[state])
        return token

    @staticmethod
    def consume(token: JoinTokenRecord) -> None:
        """Use a token `usable` returned, once (in the caller's transaction, after `usable` in it);
        of concurrent users of a single-use token, one wins."""
        if not rows.use(token.id):
            raise Unauthorized(REFUSED["used"])

    def create(self, request: JoinTokenRequest) -> tuple[JoinTokenStatus, str]:
        """A new join token and its secret."""
        def create() -> tuple[JoinTokenStatus, str]:
            now = self.clock()
            secret = tokens.new_token(tokens.JOIN)
            expires = None if request.ttl_seconds is None else now + request.ttl_seconds
            token = JoinTokenRecord(id=self.make_id(), reusable=request.reusable, description=request.description,
                                    created_at=now, expires_at=expires, revoked_at=None, uses=0)
            rows.add(token, tokens.digest(secret))
            emit("token_created", token=token.id, reusable=token.reusable, expires_at=expires, reason="admin")
            return JoinTokenStatus(token, token.state_at(now)), secret
        return database.retrying(create)

    def every(self) -> list[JoinTokenStatus]:
        now = self.clock()
        return [JoinTokenStatus(token, token.state_at(now)) for token in rows.every()]

    def revoke(self, token_id: str) -> JoinTokenStatus:
        def revoke() -> JoinTokenStatus:
            now = self.clock()
            token = rows.get(token_id)
            if token is None:
                raise NotFound(f"no join token {token_id!r}")
            if token.revoked_at is None:
                rows.revoke(token_id, now)
                emit("token_revoked", token=token_id, reason="admin")
                token = msgspec.structs.replace(token, revoked_at=now)
            return JoinTokenStatus(token, token.state_at(now))
        return database.retrying(revoke)
