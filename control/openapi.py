"""The OpenAPI 3 description of the HTTP API.

Owns the per-operation documentation. Request schemas come from the msgspec
structs that validate them, so the spec cannot drift from validation; a test
checks that every route the app serves is documented and nothing more.
"""
from __future__ import annotations

import msgspec

from control import schemas

ADMIN, NODE, JOIN_OR_NODE = [{"adminToken": []}], [{"nodeToken": []}], [{"joinToken": []}, {"nodeToken": []}]
LONG_POLL = [
    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
     "description": "Revision the caller has; answer a delta from it, or 304 if unchanged."},
    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0},
     "description": "Seconds to hold the request open until the revision passes `since` (capped by max_wait)."},
    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"},
     "description": "ETag of a previous answer (\"rREV\"); same as since=REV."},
]
STREAM = {"name": "stream", "in": "query", "schema": {"type": "boolean"},
          "description": "Keep the response open as server-sent events (text/event-stream): a `netmap` event "
                         "whose data is the answer for `since` (none if current), then one per new revision "
                         "(id = revision), a keepalive comment every 15 s, an `error` event if the node is removed."}
ERROR = {"$ref": "#/components/schemas/Error"}


def json_body(ref: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def ok(description: str, **extra) -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}},
            **extra}


ERRORS = {str(code): {"description": text, "content": {"application/json": {"schema": ERROR}}}
          for code, text in [(400, "Invalid request"), (401, "Missing or wrong token"), (403, "Not allowed"),
                             (404, "Not found"), (409, "Conflict"), (413, "Body too large"),
                             (507, "Mesh address space exhausted")]}

OPERATIONS = {
    ("/healthz", "get"): {"summary": "Liveness of this instance and its store", "responses": ok("Healthy")},
    ("/metrics", "get"): {"summary": "Prometheus metrics",
                          "responses": {"200": {"description": "Prometheus text exposition",
                                                "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    ("/v1/openapi.json", "get"): {"summary": "This document", "responses": ok("OpenAPI 3 document")},
    ("/v1/register", "post"): {
        "summary": "Enroll a node with a join token, or update it with its node token",
        "description": "Answers node_id, mesh_ip, mesh_prefix, node_token, heartbeat_interval, offline_after "
                       "and revision. A public key already registered can only be re-registered with that "
                       "node's token; the node keeps its mesh IP.",
        "security": JOIN_OR_NODE, "requestBody": json_body("Register"),
        "responses": ok("Registered", **{k: ERRORS[k] for k in ("400", "401", "409", "413", "507")})},
    ("/v1/nodes/{node_id}/heartbeat", "post"): {
        "summary": "Mark the node alive; report its applied revision and peer health",
        "security": NODE, "requestBody": json_body("Heartbeat"),
        "responses": ok("Recorded", **{k: ERRORS[k] for k in ("400", "401", "403", "413")})},
    ("/v1/netmap", "get"): {
        "summary": "This node and its peers; long-poll with since and wait",
        "description": "Full map: {revision, delta: false, mesh_prefix, self, peers}. Delta (since is recent): "
                       "{revision, delta: true, since, mesh_prefix, self, upserted, removed}. 304 when "
                       "nothing changed after since within wait seconds.",
        "security": NODE, "parameters": LONG_POLL + [STREAM],
        "responses": ok("Netmap", **{"304": {"description": "Not modified"}, "401": ERRORS["401"]})},
    ("/v1/nodes", "get"): {
        "summary": "Every node with liveness, applied revision and peer health (admin); long-poll like netmap",
        "security": ADMIN, "parameters": LONG_POLL,
        "responses": ok("Nodes", **{"304": {"description": "Not modified"}, "401": ERRORS["401"]})},
    ("/v1/nodes/{node_id}", "get"): {"summary": "One node (admin)", "security": ADMIN,
                                     "responses": ok("Node", **{k: ERRORS[k] for k in ("401", "404")})},
    ("/v1/nodes/{node_id}", "delete"): {
        "summary": "Remove a node from every peer's map (admin), or leave the mesh (the node's own token)",
        "security": [{"adminToken": []}, {"nodeToken": []}],
        "responses": ok("Deleted", **{k: ERRORS[k] for k in ("401", "403", "404")})},
    ("/v1/join-tokens", "post"): {
        "summary": "Create a join token (admin); the secret is shown only in this answer",
        "security": ADMIN, "requestBody": json_body("JoinTokenCreate"),
        "responses": {"201": {"description": "Created"}, **{k: ERRORS[k] for k in ("400", "401")}}},
    ("/v1/join-tokens", "get"): {"summary": "List join tokens without their secrets (admin)", "security": ADMIN,
                                 "responses": ok("Join tokens", **{"401": ERRORS["401"]})},
    ("/v1/join-tokens/{token_id}", "delete"): {"summary": "Revoke a join token (admin)", "security": ADMIN,
                                               "responses": ok("Revoked", **{k: ERRORS[k] for k in ("401", "404")})},
}


def path_parameters(path: str) -> list[dict]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


def build_spec() -> dict:
    _, components = msgspec.json.schema_components(
        [schemas.Register, schemas.Heartbeat, schemas.JoinTokenCreate],
        ref_template="#/components/schemas/{name}")
    components["Error"] = {"type": "object", "required": ["error", "message"],
                           "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}
    paths: dict = {}
    for (path, method), operation in OPERATIONS.items():
        operation = dict(operation)
        params = path_parameters(path) + operation.pop("parameters", [])
        if params:
            operation["parameters"] = params
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "meshvpn control plane", "version": "1",
                 "description": "Membership, mesh IPs, liveness and netmaps of a WireGuard full mesh."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "adminToken": {"type": "http", "scheme": "bearer", "description": "Contents of admin.token"},
            "joinToken": {"type": "http", "scheme": "bearer", "description": "A join token (mvj_...)"},
            "nodeToken": {"type": "http", "scheme": "bearer", "description": "The node's token (mvn_...)"}}},
    }
