"""Proof of key possession: the control plane's X25519 key and single-use enrolment challenges.

Owns issuing a nonce to a bearer (a join or node token), and redeeming it: the nonce must be
outstanding, issued to the same bearer and younger than `CHALLENGE_TTL`, and the proof must be
HMAC-SHA256 keyed with X25519(node private key, control key) over nonce + node public key
(`meshcommon.contract.keys`). Redeeming deletes the nonce in the caller's transaction, so a failed
registration rolls back and consumes nothing, and of two uses of one nonce only one can win.
Nonces live in the database (SQL in `store/challenges.py`): every instance sharing it accepts them.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from control.rules.errors import ProofRejected, TooManyRequests
from control.store import challenges as nonces
from control.store import db as database
from meshcommon.contract import keys
from meshcommon.contract.wire import ChallengeAnswer

CHALLENGE_TTL = 60.0  # seconds a nonce may be redeemed
MAX_OUTSTANDING = 1024  # unredeemed nonces per bearer: enough for a mass enrolment, not to fill the table


def nonce_hash(nonce: bytes) -> str:
    return hashlib.sha256(nonce).hexdigest()


class Challenges:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock

    @cached_property
    def private_key(self) -> X25519PrivateKey:
        """The control key: created once by whichever instance gets there first, then shared."""
        text = database.retrying(lambda: nonces.control_key(keys.new_private_key(), self.clock()))
        return X25519PrivateKey.from_private_bytes(keys.decode32(text, "control key"))

    @cached_property
    def public_key(self) -> str:
        return keys.encode(self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def issue(self, token_hash: str) -> ChallengeAnswer:
        """A new nonce for the bearer whose token hashes to `token_hash` (already authenticated)."""
        now = self.clock()
        nonce = secrets.token_bytes(keys.NONCE_LENGTH)

        def store() -> None:
            nonces.purge_expired(now)
            outstanding = nonces.outstanding(token_hash)
            if outstanding >= MAX_OUTSTANDING:
                raise TooManyRequests(f"{outstanding} challenges outstanding for this token: redeem or wait "
                                      f"{CHALLENGE_TTL:.0f} s", retry_after=CHALLENGE_TTL)
            nonces.add(nonce_hash(nonce), token_hash, now + CHALLENGE_TTL)
        database.retrying(store)
        return ChallengeAnswer(nonce=keys.encode(nonce), control_key=self.public_key, expires_in=CHALLENGE_TTL)

    def redeem(self, token_hash: str, public_key: str, nonce: str | None, proof: str | None) -> None:
        """Check the proof for `public_key` and use up its nonce. Call inside the write transaction."""
        if nonce is None or proof is None:
            raise ProofRejected("proof of key possession required: get a nonce from GET /v1/challenge and "
                                "send nonce and proof with the registration")
        raw = keys.decode32(nonce, "nonce")
        if not nonces.redeem(nonce_hash(raw), token_hash, self.clock()):
            raise ProofRejected("unknown, used or expired nonce (or issued to another token): "
                                "get a new one from GET /v1/challenge")
        if not keys.verify(self.private_key, public_key, raw, proof):
            raise ProofRejected("proof does not match the public key: the private key is not held")
