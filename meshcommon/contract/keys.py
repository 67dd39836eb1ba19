"""WireGuard public keys and the proof that a node holds the private key of the one it enrols.

Pure. Owns the key syntax (base64 of 32 bytes, canonical), the refusal of keys WireGuard refuses
anyway (all-zero and other low-order points, found by the X25519 exchange failing), and the proof:
base64(HMAC-SHA256(key = X25519(node private key, control key), msg = nonce + node public key)).
X25519 and HMAC come from `cryptography`; nothing here is hand-rolled crypto. Keys are taken as raw
bytes (`private_bytes_raw`), not through `serialization`, which every agent would load for nothing.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

KEY_LENGTH = 32
NONCE_LENGTH = 32


class BadKey(ValueError):
    pass


def decode32(text: object, what: str) -> bytes:
    """The 32 bytes behind canonical base64 text (44 characters, one '='), or BadKey."""
    if not isinstance(text, str) or len(text) != 44 or not text.isascii():
        raise BadKey(f"{what} must be base64 of {KEY_LENGTH} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey(f"{what} must be base64 of {KEY_LENGTH} bytes") from None
    if len(raw) != KEY_LENGTH or base64.b64encode(raw).decode() != text:
        raise BadKey(f"{what} must be canonical base64 of {KEY_LENGTH} bytes")
    return raw


def encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@functools.lru_cache(maxsize=65536)
def _usable(raw: bytes) -> bool:
    # A low-order point makes every shared secret all-zero; `cryptography` refuses that exchange.
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(raw))
        return True
    except ValueError:
        return False


_PROBE = X25519PrivateKey.generate()


def check_public_key(text: object) -> bytes:
    """The raw bytes of a usable WireGuard public key, or BadKey saying why it is refused."""
    raw = decode32(text, "public key")
    if not _usable(raw):
        raise BadKey("public key is a low-order point (all-zero or equivalent): WireGuard refuses it")
    return raw


def is_valid_public_key(text: object) -> bool:
    try:
        check_public_key(text)
        return True
    except BadKey:
        return False


def new_private_key() -> str:
    """A new X25519 private key, clamped as `wg genkey` makes them (the kernel clamps what it is
    given, so an unclamped key would read back from it as another key)."""
    raw = bytearray(X25519PrivateKey.generate().private_bytes_raw())
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return encode(bytes(raw))


def public_key_of(private_key: str) -> str:
    key = X25519PrivateKey.from_private_bytes(decode32(private_key, "private key"))
    return encode(key.public_key().public_bytes_raw())


def proof(shared_secret: bytes, nonce: bytes, public_key: bytes) -> str:
    mac = crypto_hmac.HMAC(shared_secret, hashes.SHA256())
    mac.update(nonce + public_key)
    return encode(mac.finalize())


def prove(private_key: str, control_key: str, nonce: str) -> str:
    """The node's side: the proof for `nonce` from its private key and the control plane's public key."""
    mine = X25519PrivateKey.from_private_bytes(decode32(private_key, "private key"))
    shared = mine.exchange(X25519PublicKey.from_public_bytes(decode32(control_key, "control key")))
    public = mine.public_key().public_bytes_raw()
    return proof(shared, decode32(nonce, "nonce"), public)


def verify(control_private: X25519PrivateKey, public_key: str, nonce: bytes, claimed: str) -> bool:
    """The control plane's side: does `claimed` prove possession of `public_key`'s private key?"""
    try:
        raw = check_public_key(public_key)
        shared = control_private.exchange(X25519PublicKey.from_public_bytes(raw))
    except (BadKey, ValueError):
        return False
    return hmac.compare_digest(proof(shared, nonce, raw).encode(), str(claimed).encode())
