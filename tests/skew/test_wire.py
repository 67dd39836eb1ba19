"""Version skew on the wire, both ways, against each earlier release's recorded contract
(tests/skew/fixtures/<tag>/, written by scripts/record-wire-fixtures from the release's own code):

- an agent of that release, against this control plane: its recorded requests, replayed, are
  served as they were, and every answer fits the schema that release's agent decodes;
- this agent, against a control plane of that release: every request it makes fits the schema
  that release's control plane enforces (it refuses unknown fields), and every answer that
  release gave decodes through this agent's own reading.
The policy these enforce is docs/deploy.md's "Version skew".
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import jsonschema
import msgspec
import pytest

from agent import agent as agent_main
from agent.client import ControlClient
from agent.core import intake
from agent.core.health import Tracker
from agent.core.model import PeerStats
from agent.session import Session
from control import config
from control.api.app import create_app
from control.live.runtime import Runtime
from control.store import db
from meshcommon.contract import keys, wire
from tests.control.conftest import control, store, store_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio
FIXTURES = Path(__file__).parent / "fixtures"
RELEASES = sorted(path.name for path in FIXTURES.iterdir() if (path / "exchanges.json").exists())
FIXED_ROUTES = ("/v1/challenge", "/v1/register", "/v1/netmap")  # paths that are their own OpenAPI path


def recorded(release: str) -> tuple[dict, list[dict]]:
    folder = FIXTURES / release
    return json.loads((folder / "openapi.json").read_text()), json.loads((folder / "exchanges.json").read_text())


def route_of(path: str) -> str:
    if path in FIXED_ROUTES:
        return path
    parts = path.split("/")
    if path.endswith("/heartbeat"):
        return "/v1/nodes/{node_id}/heartbeat"
    assert len(parts) == 4 and parts[:3] == ["", "v1", "nodes"], path
    return "/v1/nodes/{node_id}"


def schema_check(spec: dict, schema: dict, value: object, what: str) -> None:
    """`value` fits `schema`, a schema of `spec` (its #/components references resolved in it)."""
    validator = jsonschema.Draft202012Validator({**schema, "components": spec["components"]})
    problems = [f"{'/'.join(map(str, error.absolute_path)) or '.'}: {error.message}"
                for error in validator.iter_errors(value)]
    assert not problems, f"{what}: {problems}"


def answer_schema(spec: dict, method: str, path: str, status: int) -> dict:
    responses = spec["paths"][route_of(path)][method.lower()]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


def request_schema(spec: dict, method: str, path: str) -> dict:
    return spec["paths"][route_of(path)][method.lower()]["requestBody"]["content"]["application/json"]["schema"]


async def test_every_release_has_its_contract_recorded():
    assert "v0.2.0" in RELEASES
    for release in RELEASES:
        spec, exchanges = recorded(release)
        assert {(x["method"], route_of(x["path"])) for x in exchanges} >= {
            ("GET", "/v1/challenge"), ("POST", "/v1/register"), ("POST", "/v1/nodes/{node_id}/heartbeat"),
            ("GET", "/v1/netmap"), ("DELETE", "/v1/nodes/{node_id}")}, release
        assert spec["paths"], release


@pytest.mark.parametrize("release", RELEASES)
async def test_this_control_plane_serves_an_agent_of_an_earlier_release(control, release):  # noqa: F811
    """Each request of the release's agent, replayed in order (its ids, tokens and revisions mapped
    to this run's, and each enrolment proven anew: a proof answers one challenge of one control
    plane), is answered with the status it had, and the answer fits the release's schema."""
    spec, exchanges = recorded(release)
    join = await control.join_token(reusable=True)
    by_key: dict[str, dict] = {}  # recorded public key -> its node in this run: private key, id, token
    by_id: dict[str, dict] = {}  # recorded node id -> the same
    revisions: dict[int, int] = {}  # recorded revision -> this run's at the same point
    challenge: dict = {}
    for exchange in exchanges:
        method, path, body = exchange["method"], exchange["path"], exchange["request"]
        recorded_id = path.split("/")[3] if path.startswith("/v1/nodes/") else None
        bearer = join if exchange["bearer"] == "join" else by_id[exchange["bearer"]]["token"]
        if path == "/v1/register":
            node = by_key.setdefault(body["public_key"], {"private": keys.new_private_key()})
            body = {**body, "public_key": keys.public_key_of(node["private"]), "nonce": challenge["nonce"],
                    "proof": keys.prove(node["private"], challenge["control_key"], challenge["nonce"])}
        if body is not None and "tunnels_down" in body:
            body = {**body, "tunnels_down": [{**item, "node_id": by_id[item["node_id"]]["id"]}
                                             for item in body["tunnels_down"]]}
        if body is not None and body.get("applied_revision") is not None:
            body = {**body, "applied_revision": revisions.get(body["applied_revision"], body["applied_revision"])}
        params = {name: str(revisions.get(int(value), int(value))) if name == "since" else value
                  for name, value in exchange["query"].items()}
        here = path.replace(recorded_id, by_id[recorded_id]["id"]) if recorded_id else path
        answer = await control.client.simulate_request(method, here, params=params, json=body,
                                                       headers={"Authorization": f"Bearer {bearer}"})
        await control.runtime.heartbeats.flush()
        assert answer.status_code == exchange["status"], (method, path, answer.text)
        schema_check(spec, answer_schema(spec, method, path, answer.status_code), answer.json,
                     f"{release} agent reading {method} {path}")
        if path == "/v1/challenge":
            challenge = answer.json
        if path == "/v1/register":
            node.update(id=answer.json["node_id"], token=answer.json["node_token"])
            by_id[exchange["answer"]["node_id"]] = node
        if "revision" in (exchange["answer"] or {}):
            revisions[exchange["answer"]["revision"]] = answer.json["revision"]


@pytest.mark.parametrize("release", RELEASES)
async def test_this_agent_reads_every_answer_of_an_earlier_release(release):
    """Through the agent's own decoding: the client's answer types, and the netmap intake that
    checks each peer entry (no entry of the release's netmaps is refused)."""
    _, exchanges = recorded(release)
    received = None
    for exchange in exchanges:
        data, route = json.dumps(exchange["answer"]).encode(), route_of(exchange["path"])
        if route == "/v1/challenge":
            msgspec.json.decode(data, type=wire.ChallengeAnswer)
        elif route == "/v1/register":
            msgspec.json.decode(data, type=wire.Registered)
        elif route.endswith("/heartbeat"):
            msgspec.json.decode(data, type=wire.HeartbeatAnswer)
        elif route == "/v1/netmap":
            received = intake.receive(received, wire.decode_netmap_entries(data))
            netmap = intake.netmap_of(received)
            assert not netmap.rejected, netmap.rejected
            assert netmap.revision == exchange["answer"]["revision"]
    assert received is not None


@pytest.fixture
async def app_transport(tmp_path):
    """This control plane in-process (SQLite), behind an httpx transport, and its admin token."""
    cfg = config.load(env={}, state_dir=tmp_path / "state", db=config.sqlite_url(tmp_path / "control.db"),
                      cidr="100.64.0.0/24")
    db.connect(cfg.db)
    db.migrate()
    runtime = Runtime(cfg, sweeper=False)
    await runtime.start()
    try:
        yield httpx.ASGITransport(app=create_app(cfg, runtime), client=("192.0.2.10", 40000)), runtime
    finally:
        await runtime.stop()
        db.db.close()


class Recording(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner, self.sent = inner, []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("release", RELEASES)
async def test_the_requests_of_this_agent_fit_a_control_plane_of_an_earlier_release(app_transport, release,
                                                                                      monkeypatch):
    """The agent's own request building (the session's registration body, the heartbeat body
    with a tunnel down) and its client, against this control plane; each request it sent is then
    checked against the release's schemas: a field that release does not know would be refused."""
    spec, _ = recorded(release)
    transport, runtime = app_transport
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as admin:
        join = (await admin.post("/v1/join-tokens", json={"reusable": True},
                                 headers={"Authorization": f"Bearer {runtime.auth.admin_token}"})).json()["token"]
    recording = Recording(transport)
    client = ControlClient(["http://control"], transport=recording)
    nodes = []
    for name, port in (("alice", 51820), ("bob", 51821)):
        private_key = keys.new_private_key()
        session = SimpleNamespace(settings=SimpleNamespace(endpoint=f"192.0.2.10:{port}", name=name, listen_port=port),
                                  public_key=keys.public_key_of(private_key), netmap=None)
        body = await Session._body(session)  # the session's own body, its fields only
        nodes.append((await client.register(join, body, private_key), body, private_key))
    (alice, alice_body, alice_key), (bob, _, _) = nodes
    await client.register(alice.node_token, {**alice_body, "name": "alice-renamed"}, alice_key)
    netmap_answer = await client.http.get("http://control/v1/netmap",
                                          headers={"Authorization": f"Bearer {alice.node_token}"})
    netmap = intake.netmap_of(intake.receive(None, wire.decode_netmap_entries(netmap_answer.content)))
    # WireGuard (the edge) shows bob without a handshake since long before: a tunnel down.
    bob_key = next(peer.public_key for peer in netmap.peers if peer.node_id == bob.node_id)
    monkeypatch.setattr(agent_main.wg, "peer_stats", lambda interface: (PeerStats(bob_key, None, 0, 0, 0),))
    probed: list[str] = []  # the quiet peer's probe (a datagram to its mesh IP) stays here: no such interface
    monkeypatch.setattr(agent_main, "nudge", probed.extend)
    tracker = Tracker()
    reconciler = SimpleNamespace(applied_revision=netmap.revision, interface="mesh0")
    body = {}
    for now in (1000.0, 1100.0):
        with monkeypatch.context() as clock:
            clock.setattr(agent_main.time, "time", lambda now=now: now)
            body = await agent_main.heartbeat_body(reconciler, tracker, netmap)
    assert body.get("tunnels_down"), body  # the test covers the report with a tunnel down
    await client.heartbeat(alice.node_id, alice.node_token, body)
    await client.leave(bob.node_id, bob.node_token)
    await client.http.aclose()

    checked = set()
    for request in recording.sent:
        route = route_of(request.url.path)
        operation = spec["paths"][route][request.method.lower()]
        known = {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"}
        assert set(request.url.params) <= known, (request.method, route, dict(request.url.params))
        if request.content:
            schema_check(spec, request_schema(spec, request.method, request.url.path), json.loads(request.content),
                         f"{release} control plane reading {request.method} {route}")
        checked.add((request.method, route))
    assert checked >= {("GET", "/v1/challenge"), ("POST", "/v1/register"), ("POST", "/v1/nodes/{node_id}/heartbeat"),
                       ("DELETE", "/v1/nodes/{node_id}")}
