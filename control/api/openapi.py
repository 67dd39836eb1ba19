"""The OpenAPI 3 description of the HTTP API.

Owns the per-operation documentation. Request schemas come from the msgspec
structs that validate them, so the spec cannot drift from validation; rules a
struct checks in code and JSON Schema can say are added here. Answer
schemas come from control/api/answers.py. A test checks that every route the app
serves is documented and nothing more; another runs schemathesis against a real
server to check the server keeps to this document.
"""
from __future__ import annotations

from typing import Any

import msgspec

from control.api import answers, schemas
from meshcommon.contract import keys

Security = list[dict[str, list[str]]]
ADMIN: Security = [{"adminToken": []}]
NODE: Security = [{"nodeToken": []}]
JOIN_OR_NODE: Security = [{"joinToken": []}, {"nodeToken": []}]


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


ERROR = ref("Error")
NETMAP = {"anyOf": [ref("FullNetmapAnswer"), ref("DeltaNetmapAnswer")]}
LONG_POLL = [
    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": schemas.MAX_REVISION},
     "description": "Revision the caller has; answer a delta from it, or 304 if unchanged."},
    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": schemas.MAX_AGE},
     "description": "Seconds to hold the request open until the revision passes `since` (capped by max_wait)."},
    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"},
     "description": "ETag of a previous answer (\"rREV\"); same as since=REV."},
]
STREAM = {"name": "stream", "in": "query", "schema": {"type": "boolean"},
          "description": "Keep the response open as server-sent events (text/event-stream): a `netmap` event "
                         "whose data is the answer for `since` (none if current), then one per new revision "
                         "(id = revision), a keepalive comment every 15 s, an `error` event if the node is removed "
                         "(`unauthorized`) or already holds 4 streams on this worker (`too_many_requests`)."}
ETAG = {"ETag": {"description": "\"rREV\", REV the revision answered", "schema": {"type": "string"}}}


def json_event(name: str, data: dict, **properties) -> dict:
    """One server-sent event (OpenAPI 3.1: the stream's schema describes each event) with JSON data."""
    return {"type": "object", "required": ["event", "data", *properties],
            "properties": {"event": {"const": name}, **properties,
                           "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data}}}


NETMAP_EVENTS = {"oneOf": [json_event("netmap", NETMAP, id={"type": "string", "description": "The revision"}),
                           json_event("error", ERROR)]}
NETMAP_ANSWER = {"description": "Netmap (FullNetmap or DeltaNetmap; server-sent events with stream=true)",
                 "headers": ETAG, "content": {"application/json": {"schema": NETMAP},
                                              "text/event-stream": {"schema": NETMAP_EVENTS}}}


def json_body(name: str, required: bool = True) -> dict:
    body = {"required": required, "content": {"application/json": {"schema": ref(name)}}}
    if not required:
        body["description"] = "Optional: an empty body is `{}`, every field at its default."
    return body


def ok(description: str, schema: dict, status: str = "200", headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    return {status: {**answer, "headers": headers} if headers else answer}


ERRORS = {str(code): {"description": text, "content": {"application/json": {"schema": ERROR}}}
          for code, text in [(400, "Invalid request"), (401, "Missing or wrong token"), (403, "Not allowed"),
                             (404, "Not found"), (408, "Body not received within body_timeout"),
                             (409, "Conflict"), (413, "Body too large"),
                             (429, "Too many outstanding challenges"),
                             (503, "Store down, busy or full: nothing was written, try again"),
                             (507, "Mesh address space exhausted")]}
NOT_MODIFIED = {"304": {"description": "Not modified", "headers": ETAG}}


def errors(*codes: int) -> dict:
    """The error answers of a route: those given, and 503 (the store down or full) for every route."""
    return {str(code): ERRORS[str(code)] for code in sorted({*codes, 503})}


BODY_ERRORS = (400, 408, 413)  # any route that reads a body: bad JSON or schema, too slow, too large

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/healthz", "get"): {"summary": "Liveness of this instance and its store",
                          "responses": ok("Healthy", ref("HealthAnswer"))},
    ("/metrics", "get"): {"summary": "Prometheus metrics",
                          "responses": {"200": {"description": "Prometheus text exposition",
                                                "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    ("/v1/openapi.json", "get"): {"summary": "This document",
                                  "responses": ok("OpenAPI 3 document", {"type": "object"})},
    ("/v1/challenge", "get"): {
        "summary": "A single-use nonce for proving possession of a WireGuard private key",
        "description": "Answers {nonce, control_key, expires_in}: nonce is base64 of 32 random bytes, bound "
                       "to the bearer and redeemable once within expires_in (60) seconds by any instance "
                       "sharing the store; control_key is the control plane's X25519 public key (base64).",
        "security": JOIN_OR_NODE,
        "responses": {**ok("Challenge", ref("ChallengeAnswer")), **errors(401, 429)}},
    ("/v1/register", "post"): {
        "summary": "Enroll a node with a join token, or update it with its node token",
        "description": "Answers node_id, mesh_ip, mesh_prefix, node_token, heartbeat_interval, offline_after "
                       "and revision. Enrolling (join token) and changing the key (node token) need `nonce` "
                       "(from GET /v1/challenge with the same bearer) and `proof` = base64(HMAC-SHA256(key = "
                       "X25519(node private key, control_key), msg = nonce bytes + public key bytes)). A "
                       "missing, wrong, reused or expired proof consumes nothing. A public key already "
                       "registered can only be re-registered with that node's token; the node keeps its mesh IP.",
        "security": JOIN_OR_NODE, "requestBody": json_body("RegisterBody"),
        "responses": {**ok("Registered", ref("Registered")), **errors(*BODY_ERRORS, 401, 403, 409, 507)}},
    ("/v1/nodes/{node_id}/heartbeat", "post"): {
        "summary": "Mark the node alive; report its applied revision and the tunnels it has down",
        "description": "The address the request comes from (the connection's peer; behind a proxy listed in "
                       "`trusted_proxies`, the last X-Forwarded-For hop it did not write) becomes the node's "
                       "`reflexive_endpoint` with its listen port: a new one is one revision. `tunnels_down` "
                       "lists every peer without a working tunnel (no handshake, or nothing received for "
                       "HEALTH_BOUND seconds); leave it out (or null) when unchanged: agents send it when it "
                       "changes and every 30 s. `peers` is deprecated and ignored.",
        "security": NODE, "requestBody": json_body("HeartbeatBody", required=False),
        "responses": {**ok("Recorded", ref("HeartbeatAnswer")), **errors(*BODY_ERRORS, 401, 403)}},
    ("/v1/netmap", "get"): {
        "summary": "This node and its peers; long-poll with since and wait",
        "description": "Full map: {revision, delta: false, mesh_prefix, self, peers}. Delta (since is recent): "
                       "{revision, delta: true, since, mesh_prefix, self, upserted, removed}. 304 when "
                       "nothing changed after since within wait seconds.",
        "security": NODE, "parameters": [*LONG_POLL, STREAM],
        "responses": {"200": NETMAP_ANSWER, **NOT_MODIFIED, **errors(400, 401)}},
    ("/v1/nodes", "get"): {
        "summary": "Every node with liveness, applied revision, reflexive endpoint and the tunnels it reports "
                   "down (admin); long-poll like netmap",
        "security": ADMIN, "parameters": LONG_POLL,
        "responses": {**ok("Nodes", ref("NodeList"), headers=ETAG), **NOT_MODIFIED, **errors(400, 401)}},
    ("/v1/nodes/{node_id}", "get"): {"summary": "One node (admin)", "security": ADMIN,
                                     "responses": {**ok("Node", ref("NodeDetail")), **errors(401, 404)}},
    ("/v1/nodes/{node_id}", "patch"): {
        "summary": "Rename a node (admin)",
        "description": "The name follows the rules of registration; names need not be unique (`meshctl nodes` "
                       "flags the ones used twice). A new name is one revision, in every peer's netmap; the "
                       "node's re-registrations keep it, whatever name its agent was started with.",
        "security": ADMIN, "requestBody": json_body("NodeRenameBody"),
        "responses": {**ok("Renamed", ref("NodeDetail")), **errors(*BODY_ERRORS, 401, 404)}},
    ("/v1/nodes/{node_id}", "delete"): {
        "summary": "Remove a node from every peer's map (admin), or leave the mesh (the node's own token)",
        "security": [{"adminToken": []}, {"nodeToken": []}],
        "responses": {**ok("Deleted", ref("Deleted")), **errors(401, 403, 404)}},
    ("/v1/mesh/health", "get"): {
        "summary": "Pairs of nodes without a working tunnel now, as their agents report (admin)",
        "description": "A pair is listed when one of its nodes (online) reports nothing received from the other "
                       "for `bound` seconds (or no handshake since the peer was configured that long), with the "
                       "earliest `since` and one reason: `peer offline`, `both behind NAT`, `no handshake`, "
                       "`handshake expired` or `nothing received`. Empty on a healthy mesh.",
        "security": ADMIN, "responses": {**ok("Mesh health", ref("MeshHealthAnswer")), **errors(401)}},
    ("/v1/join-tokens", "post"): {
        "summary": "Create a join token (admin); the secret is shown only in this answer",
        "security": ADMIN, "requestBody": json_body("JoinTokenCreateBody", required=False),
        "responses": {**ok("Created", ref("JoinTokenCreated"), status="201"), **errors(*BODY_ERRORS, 401)}},
    ("/v1/join-tokens", "get"): {"summary": "List join tokens without their secrets (admin)", "security": ADMIN,
                                 "responses": {**ok("Join tokens", ref("JoinTokenList")), **errors(401)}},
    ("/v1/join-tokens/{token_id}", "delete"): {
        "summary": "Revoke a join token (admin)", "security": ADMIN,
        "responses": {**ok("Revoked", ref("JoinTokenAnswer")), **errors(401, 404)}},
}

# Rules RegisterBody.__post_init__ checks in code (meshcommon.contract.endpoint.parse, keys.check_public_key), said in
# JSON Schema so that what the spec calls valid the server accepts; tests/control/test_spec_fixes.py
# checks these agree with the code.
OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = rf"{OCTET}(\.{OCTET}){{3}}"
H16 = r"[0-9A-Fa-f]{1,4}"
LS32 = rf"({H16}:{H16}|{IPV4})"
IPV6 = "|".join([  # RFC 3986's IPv6address, which is what Python's ipaddress reads
    rf"({H16}:){{6}}{LS32}", rf"::({H16}:){{5}}{LS32}", rf"({H16})?::({H16}:){{4}}{LS32}",
    rf"(({H16}:){{0,1}}{H16})?::({H16}:){{3}}{LS32}", rf"(({H16}:){{0,2}}{H16})?::({H16}:){{2}}{LS32}",
    rf"(({H16}:){{0,3}}{H16})?::{H16}:{LS32}", rf"(({H16}:){{0,4}}{H16})?::{LS32}",
    rf"(({H16}:){{0,5}}{H16})?::{H16}", rf"(({H16}:){{0,6}}{H16})?::"])
PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ENDPOINT = rf"^({IPV4}|\[({IPV6})\]):{PORT}$"
# IPv4-mapped IPv6 (::ffff:0:0/96) in every spelling: five zero groups, ffff, then IPv4 or two groups.
MAPPED = rf"((::|(0{{1,4}}:){{1,4}}:)(0{{1,4}}:){{0,3}}|(0{{1,4}}:){{5}})[Ff]{{4}}:({IPV4}|{H16}:{H16})"
NOT_UNICAST = (r"^(0\.[0-9.]+|127\.[0-9.]+|169\.254\.[0-9.]+|2(2[4-9]|3[0-9])\.[0-9.]+"  # IPv4: this network,
               r"|255\.255\.255\.255"  # loopback, link-local, multicast and reserved, broadcast
               rf"|\[([0:]*(0{{0,3}}1|0\.0\.0\.[01])?"  # IPv6: unspecified, loopback,
               rf"|[Ff]{{2}}[0-9A-Fa-f]{{2}}:[^\]]*|[Ff][Ee][89AaBb][0-9A-Fa-f]:[^\]]*"  # multicast, link-local,
               rf"|{MAPPED})\]):")  # IPv4-mapped
P25519 = 2**255 - 19
LOW_ORDER_KEYS = [  # libsodium's blocklist of X25519 u-coordinates, each also with bit 255 set (X25519 ignores it)
    keys.encode((u | high).to_bytes(32, "little"))
    for u in (0, 1, 325606250916557431795983626356110631294008115727848805560023387167927233504,
              39382357235489614581723060781553021112529911719440698176882885853963445705823,
              P25519 - 1, P25519, P25519 + 1)
    for high in (0, 1 << 255)]


def express_register_rules(register: dict) -> None:
    """Add those rules to the RegisterBody schema msgspec generated."""
    properties = register["properties"]
    properties["public_key"]["not"] = {"enum": LOW_ORDER_KEYS}
    endpoint = next(option for option in properties["endpoint"]["anyOf"] if option.get("type") == "string")
    endpoint["pattern"], endpoint["not"] = ENDPOINT, {"pattern": NOT_UNICAST}
    register["anyOf"] = [  # nonce and proof go together: both strings, or neither (absent or null)
        {"properties": {"nonce": {"type": "null"}, "proof": {"type": "null"}}},
        {"required": ["nonce", "proof"], "properties": {"nonce": {"type": "string"}, "proof": {"type": "string"}}}]


def path_parameters(path: str) -> list[dict]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


def build_spec() -> dict:
    _, components = msgspec.json.schema_components(
        [schemas.RegisterBody, schemas.HeartbeatBody, schemas.JoinTokenCreateBody, schemas.NodeRenameBody,
         *answers.ANSWERS],
        ref_template="#/components/schemas/{name}")
    express_register_rules(components["RegisterBody"])
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
