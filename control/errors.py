"""Domain errors of the control plane, each with the HTTP status and code it maps to.

Raised by the service and edge layers; mapped to JSON error bodies once, by
the app's error handler. Never raise falcon errors from the service layer.
"""
from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict:
        return {"error": self.code, "message": self.message, **self.details}


class InvalidRequest(DomainError):
    status, code = 400, "invalid_request"


class Unauthorized(DomainError):
    status, code = 401, "unauthorized"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class RequestTimeout(DomainError):
    status, code = 408, "request_timeout"


class KeyTaken(DomainError):
    status, code = 409, "public_key_taken"


class BodyTooLarge(DomainError):
    status, code = 413, "body_too_large"


class AddressSpaceExhausted(DomainError):
    status, code = 507, "address_exhausted"


class Unavailable(DomainError):
    status, code = 503, "unavailable"


class ProofRejected(DomainError):
    status, code = 403, "proof_rejected"


class TooManyRequests(DomainError):
    status, code = 429, "too_many_requests"
