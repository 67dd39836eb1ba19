"""Test support: WireGuard key pairs and enrolment with proof of key possession, as an agent does it.

`new_key()` returns a public key and remembers its private key, so any helper here can prove
possession of it; a key made otherwise (a stranger's) cannot be proven.
"""
from __future__ import annotations

import httpx

from meshcommon.contract import keys

PRIVATE: dict[str, str] = {}  # public key -> private key, for every key new_key() made


def new_key() -> str:
    private = keys.new_private_key()
    public = keys.public_key_of(private)
    PRIVATE[public] = private
    return public


def proven(challenge: dict, body: dict) -> dict:
    """`body` with the nonce and the proof for its public key (which new_key() must have made)."""
    proof = keys.prove(PRIVATE[body["public_key"]], challenge["control_key"], challenge["nonce"])
    return {**body, "nonce": challenge["nonce"], "proof": proof}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def body_for(name: str, key: str | None, extra: dict) -> dict:
    return {"public_key": key or new_key(), "name": name, **extra}


async def register(client: httpx.AsyncClient, url: str, token: str, name: str, key: str | None = None,
                   **extra) -> httpx.Response:
    """Challenge, then register: what a node does to enrol (or change its key). A refused
    challenge (a used or unknown token) is returned as the answer, as the registration would be."""
    challenge = await client.get(url + "/v1/challenge", headers=auth(token))
    if challenge.status_code != 200:
        return challenge  # the token was refused already: that is the answer
    return await client.post(url + "/v1/register", json=proven(challenge.json(), body_for(name, key, extra)),
                             headers=auth(token))


def register_sync(url: str, token: str, name: str, key: str | None = None, client: httpx.Client | None = None,
                  **extra) -> httpx.Response:
    http = client or httpx.Client(timeout=30)
    try:
        challenge = http.get(url + "/v1/challenge", headers=auth(token))
        if challenge.status_code != 200:
            return challenge
        return http.post(url + "/v1/register", json=proven(challenge.json(), body_for(name, key, extra)),
                         headers=auth(token))
    finally:
        if client is None:
            http.close()
