"""Domain errors of the control plane, each with the HTTP status and code it maps to.

Owns the error vocabulary: a class per refusal, its status and its `error` code, given where the
class is declared. Raised by the registry and the edge; mapped to JSON error bodies once, by the
app's error handler (and once by the netmap stream). Never raise falcon errors from below the
resources.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init_subclass__(cls, *, status: int, code: str, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.status, cls.code = status, code

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class InvalidRequest(DomainError, status=400, code="invalid_request"):
    """A body, parameter or value that is malformed or out of bounds."""


class Unauthorized(DomainError, status=401, code="unauthorized"):
    """No token, or one that is unknown, expired, revoked or used up; or a node that was removed."""


class Forbidden(DomainError, status=403, code="forbidden"):
    """A valid node token acting for another node."""


class ProofRejected(DomainError, status=403, code="proof_rejected"):
    """A registration without a valid proof that its sender holds the private key."""


class NotFound(DomainError, status=404, code="not_found"):
    """No such node or join token."""


class RequestTimeout(DomainError, status=408, code="request_timeout"):
    """A body that did not arrive within `body_timeout`."""


class KeyTaken(DomainError, status=409, code="public_key_taken"):
    """A public key registered to another node."""


class BodyTooLarge(DomainError, status=413, code="body_too_large"):
    """A body over `max_body`."""


class TooManyRequests(DomainError, status=429, code="too_many_requests"):
    """Too many challenges outstanding for one token."""


class Unavailable(DomainError, status=503, code="unavailable"):
    """The store is down or busy past retries: nothing was written, try again."""


class AddressSpaceExhausted(DomainError, status=507, code="address_exhausted"):
    """No free mesh IP left in the prefix."""
