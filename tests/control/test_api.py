"""The HTTP API through falcon's ASGI conductor, on SQLite and on a real PostgreSQL."""
import asyncio
import json
import time

import falcon.inspect
import msgspec
import pytest

from control.api.app import create_app
from control.store.models import Node
from testbed.enrol import new_key
from tests.control.support import bearer

pytestmark = pytest.mark.anyio


async def test_register_allocates_distinct_ips_and_answers_the_contract(control):
    token = await control.join_token(reusable=True)
    first = await control.node(token, "alpha", endpoint="192.0.2.1:51820")
    second = await control.node(token, "beta", endpoint="[2001:db8::1]:51820", listen_port=51000)
    assert {"node_id", "mesh_ip", "node_token", "heartbeat_interval", "mesh_prefix"} <= set(first)
    assert first["mesh_ip"] == "100.64.0.1" and second["mesh_ip"] == "100.64.0.2"
    assert first["node_token"].startswith("mvn_") and first["heartbeat_interval"] == 2.0
    assert second["revision"] == first["revision"] + 1


async def test_reregistering_with_the_node_token_keeps_id_and_ip(control):
    token = await control.join_token()
    key = new_key()
    node = await control.node(token, "alpha", key=key, endpoint="192.0.2.1:51820")
    again = await control.register(node["node_token"], "alpha", key=key, endpoint="192.0.2.9:51820")
    assert again.status_code == 200
    assert (again.json["node_id"], again.json["mesh_ip"]) == (node["node_id"], node["mesh_ip"])
    assert again.json["revision"] == node["revision"] + 1  # endpoint changed: one bump
    same = await control.register(node["node_token"], "alpha", key=key, endpoint="192.0.2.9:51820")
    assert same.json["revision"] == again.json["revision"]  # nothing changed: no bump


async def test_each_node_shows_its_agent_s_version_which_moves_no_revision(control):
    token = await control.join_token(reusable=True)
    key = new_key()
    node = await control.node(token, "alpha", key=key, user_agent="meshagent/0.3.0")
    shown = await control.client.simulate_get(f"/v1/nodes/{node['node_id']}", headers=control.admin)
    assert shown.json["agent_version"] == "0.3.0"
    upgraded = await control.register(node["node_token"], "alpha", key=key, user_agent="meshagent/0.3.1 (linux)")
    assert upgraded.json["revision"] == node["revision"]  # no peer sees a version: no revision
    listed = await control.client.simulate_get("/v1/nodes", headers=control.admin)
    assert [n["agent_version"] for n in listed.json["nodes"]] == ["0.3.1"]
    # An older agent (no version) or a header that is not a short, plain version shows none.
    for user_agent in (None, "python-httpx/0.28.1", "meshagent/../../etc", "meshagent/" + "9" * 40, "meshagent/1;x"):
        other = await control.node(token, "other", user_agent=user_agent)
        shown = await control.client.simulate_get(f"/v1/nodes/{other['node_id']}", headers=control.admin)
        assert shown.json["agent_version"] is None, user_agent


async def test_a_stranger_with_a_public_key_cannot_take_over_or_move_a_node(control):
    token = await control.join_token(reusable=True)
    key = new_key()
    victim = await control.node(token, "victim", key=key, endpoint="192.0.2.1:51820")
    hijack = await control.register(token, "evil", key=key, endpoint="203.0.113.66:51820")
    assert hijack.status_code == 409 and hijack.json["error"] == "public_key_taken"
    other = await control.node(token, "other")
    stolen = await control.register(other["node_token"], "evil", key=key)
    assert stolen.status_code == 409
    listed = await control.client.simulate_get(f"/v1/nodes/{victim['node_id']}", headers=control.admin)
    assert listed.json["endpoint"] == "192.0.2.1:51820" and listed.json["name"] == "victim"


async def test_single_use_expired_and_revoked_join_tokens_are_refused(control):
    single = await control.join_token()
    assert (await control.register(single)).status_code == 200
    used = await control.register(single)
    assert used.status_code == 401 and "already used" in used.json["message"]

    short = await control.join_token(reusable=True, ttl_seconds=10)
    control.clock.now += 11
    expired = await control.register(short)
    assert expired.status_code == 401 and "expired" in expired.json["message"]

    created = await control.client.simulate_post("/v1/join-tokens", json={"reusable": True}, headers=control.admin)
    revoke = await control.client.simulate_delete(f"/v1/join-tokens/{created.json['id']}", headers=control.admin)
    assert revoke.json["state"] == "revoked"
    refused = await control.register(created.json["token"])
    assert refused.status_code == 401 and "revoked" in refused.json["message"]
    listed = await control.client.simulate_get("/v1/join-tokens", headers=control.admin)
    assert {t["state"] for t in listed.json["join_tokens"]} == {"used", "expired", "revoked"}
    assert all("token" not in t for t in listed.json["join_tokens"])


async def test_exhausted_prefix_is_a_clear_507(control):
    token = await control.join_token(reusable=True)
    for i in range(254):  # a /24 holds 254 nodes
        Node.create(id=f"n{i}", name="x", public_key=new_key(), mesh_ip=f"100.64.0.{i + 1}", listen_port=1,
                    token_hash=f"{i:064d}", created_at=0, last_seen=0, changed_revision=0)
    full = await control.register(token)
    assert full.status_code == 507 and full.json["error"] == "address_exhausted"


async def test_netmap_full_then_delta_then_304(control):
    token = await control.join_token(reusable=True)
    a = await control.node(token, "a", endpoint="192.0.2.1:51820")
    b = await control.node(token, "b", endpoint="192.0.2.2:51820")
    full = await control.netmap(a)
    assert full.status_code == 200 and full.json["delta"] is False
    assert full.json["self"]["node_id"] == a["node_id"]
    assert [p["node_id"] for p in full.json["peers"]] == [b["node_id"]]
    peer = full.json["peers"][0]
    assert {"node_id", "name", "mesh_ip", "public_key", "endpoint", "online"} <= set(peer)
    revision = full.json["revision"]
    assert full.headers["etag"] == f'"r{revision}"'

    unchanged = await control.netmap(a, since=revision)
    assert unchanged.status_code == 304
    by_etag = await control.client.simulate_get("/v1/netmap", headers={**bearer(a), "If-None-Match": f'"r{revision}"'})
    assert by_etag.status_code == 304

    c = await control.node(token, "c")
    change = await control.netmap(a, since=revision)
    assert change.json["delta"] is True
    assert [p["node_id"] for p in change.json["upserted"]] == [c["node_id"]] and change.json["removed"] == []


async def test_long_poll_wakes_promptly_on_a_change(control):
    token = await control.join_token(reusable=True)
    a = await control.node(token, "a")
    revision = (await control.netmap(a)).json["revision"]
    waiter = asyncio.create_task(control.netmap(a, since=revision, wait=10))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    started = time.monotonic()
    b = await control.node(token, "b")
    answer = await waiter
    woke_after = time.monotonic() - started
    assert answer.status_code == 200 and [p["node_id"] for p in answer.json["upserted"]] == [b["node_id"]]
    assert woke_after < 0.5, woke_after  # the benchmark gives the exact figure


async def test_long_poll_times_out_with_304(control):
    token = await control.join_token()
    a = await control.node(token, "a")
    revision = (await control.netmap(a)).json["revision"]
    started = time.monotonic()
    assert (await control.netmap(a, since=revision, wait=0.3)).status_code == 304
    assert time.monotonic() - started >= 0.29


async def test_delete_removes_the_node_from_every_map_at_once(control):
    token = await control.join_token(reusable=True)
    nodes = [await control.node(token, f"n{i}") for i in range(3)]
    revision = (await control.netmap(nodes[0])).json["revision"]
    gone = nodes[2]
    deleted = await control.client.simulate_delete(f"/v1/nodes/{gone['node_id']}", headers=control.admin)
    assert deleted.status_code == 200 and deleted.json["revision"] == revision + 1
    for node in nodes[:2]:
        answer = await control.netmap(node, since=revision)
        assert answer.json["removed"] == [gone["node_id"]]
    assert (await control.netmap(gone)).status_code == 401
    again = await control.client.simulate_delete(f"/v1/nodes/{gone['node_id']}", headers=control.admin)
    assert again.status_code == 404


async def test_a_node_may_leave_but_not_remove_others(control):
    token = await control.join_token(reusable=True)
    a, b = await control.node(token, "a"), await control.node(token, "b")
    other = await control.client.simulate_delete(f"/v1/nodes/{b['node_id']}", headers=bearer(a))
    assert other.status_code == 403
    left = await control.client.simulate_delete(f"/v1/nodes/{a['node_id']}", headers=bearer(a))
    assert left.status_code == 200
    listed = await control.client.simulate_get("/v1/nodes", headers=control.admin)
    assert [n["node_id"] for n in listed.json["nodes"]] == [b["node_id"]]


async def test_heartbeat_records_applied_revision_and_tunnels_down_without_a_bump(control):
    token = await control.join_token(reusable=True)
    a, b = await control.node(token, "a"), await control.node(token, "b")
    revision = b["revision"]
    beat = await control.heartbeat(a, applied_revision=revision,
                                   tunnels_down=[{"node_id": b["node_id"], "down_for": 70, "reason": "no_traffic"}])
    assert beat.status_code == 200 and beat.json["heartbeat_interval"] == 2.0
    await control.runtime.heartbeats.flush()
    shown = await control.client.simulate_get(f"/v1/nodes/{a['node_id']}", headers=control.admin)
    assert shown.json["applied_revision"] == revision
    [down] = shown.json["tunnels_down"]
    assert (down["node_id"], down["reason"]) == (b["node_id"], "no_traffic")
    assert (await control.netmap(a, since=revision)).status_code == 304
    wrong = await control.client.simulate_post(f"/v1/nodes/{b['node_id']}/heartbeat", json={}, headers=bearer(a))
    assert wrong.status_code == 403


async def test_admin_routes_need_the_admin_token(control):
    token = await control.join_token()
    node = await control.node(token)
    for method, path in [("GET", "/v1/nodes"), ("GET", f"/v1/nodes/{node['node_id']}"),
                         ("POST", "/v1/join-tokens"), ("GET", "/v1/join-tokens"), ("DELETE", "/v1/join-tokens/x")]:
        for headers in ({}, bearer(node), {"Authorization": "Bearer mva_wrong"}):
            result = await control.client.simulate_request(method, path, headers=headers, json={})
            assert result.status_code == 401, (method, path, headers)
            assert result.json["error"] == "unauthorized"


async def test_openapi_documents_exactly_the_routes_served(control, tmp_path):
    spec = (await control.client.simulate_get("/v1/openapi.json")).json
    assert spec["openapi"].startswith("3.")
    app = create_app(control.runtime.config, control.runtime)
    served = {(route.path, method.method.lower()) for route in falcon.inspect.inspect_routes(app)
              for method in route.methods if method.internal is False}
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert served == documented
    assert "RegisterBody" in spec["components"]["schemas"]


async def test_health_and_metrics(control):
    health = await control.client.simulate_get("/healthz")
    assert health.status_code == 200 and health.json["status"] == "ok"
    metrics = await control.client.simulate_get("/metrics")
    assert "meshvpn_control_revision" in metrics.text and "meshvpn_control_requests_total" in metrics.text


async def test_spliced_full_map_equals_the_pure_netmap(control):
    from tests.control.netmap_oracle import netmap_for
    token = await control.join_token(reusable=True)
    nodes = [await control.node(token, f"n{i}", endpoint=f"192.0.2.{i + 1}:51820") for i in range(5)]
    cache = control.runtime.cache
    for node in nodes:
        for since in (None, 0, 2, nodes[-1]["revision"] - 1):
            kind, blob = cache.answer(node["node_id"], since)
            expected = msgspec.to_builtins(netmap_for(cache.snapshot(), node["node_id"], cache.prefix, since))
            assert json.loads(blob) == expected and kind == ("delta" if expected["delta"] else "full")


def test_docs_api_md_is_generated_from_the_current_spec():
    from pathlib import Path

    from control.api.apidoc import render
    from control.api.openapi import build_spec
    current = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    assert current == render(build_spec()), "docs/api.md is stale: run scripts/gen-api-doc"


async def test_a_freed_ip_is_not_reused_until_the_prefix_wraps(control):
    token = await control.join_token(reusable=True)
    a = await control.node(token, "a")
    await control.node(token, "b")
    await control.client.simulate_delete(f"/v1/nodes/{a['node_id']}", headers=control.admin)
    c = await control.node(token, "c")
    assert c["mesh_ip"] == "100.64.0.3"
    for i in range(251):  # fill the /24 up to .254
        await control.node(token, f"fill{i}")
    wrapped = await control.node(token, "wrapped")
    assert wrapped["mesh_ip"] == "100.64.0.1"  # the hole left by a

