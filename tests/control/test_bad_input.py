"""Bad input: always a 4xx with a JSON error body, never a 500, never a half-written record."""
import json

import pytest

from testbed.enrol import new_key
from tests.control.support import bearer

pytestmark = pytest.mark.anyio

KEY = new_key()
BAD_REGISTRATIONS = [
    b"{",
    b"[]",
    b"null",
    b"\xff\xfe junk",
    json.dumps({"name": "a"}).encode(),  # no key
    json.dumps({"public_key": KEY}).encode(),  # no name
    json.dumps({"public_key": "short", "name": "a"}).encode(),
    json.dumps({"public_key": KEY[:-2] + "==", "name": "a"}).encode(),  # 31 bytes
    json.dumps({"public_key": "A" * 42 + "B=", "name": "a"}).encode(),  # non-canonical last char
    json.dumps({"public_key": KEY + "\n", "name": "a"}).encode(),
    json.dumps({"public_key": KEY, "name": ""}).encode(),
    json.dumps({"public_key": KEY, "name": "x" * 64}).encode(),
    json.dumps({"public_key": KEY, "name": "bad name"}).encode(),
    json.dumps({"public_key": KEY, "name": "a\n[Peer]"}).encode(),
    json.dumps({"public_key": KEY, "name": "a\n"}).encode(),
    json.dumps({"public_key": KEY, "name": "tab\there"}).encode(),
    json.dumps({"public_key": KEY, "name": "ünïcode"}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "endpoint": "nohostport"}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "endpoint": "host:0"}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "endpoint": "host:65536"}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "endpoint": "[not-v6]:51820"}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "endpoint": "bad_host!:51820"}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "endpoint": "a\n:51820"}).encode(),
    *[json.dumps({"public_key": KEY, "name": "a", "endpoint": bad}).encode() for bad in [
        "nonexistent.invalid:51820", "999.1.1.1:51820", "0.0.0.0:51820", "[::]:51820", "224.0.0.1:51820",
        "255.255.255.255:51820", "127.0.0.1:51820", "[fe80::1%eth0\x1b]:51820", "[fe80::1%a/b]:51820",
        "192.0.2.1:051820", "192.0.2.1:\uff15\uff11\uff18\uff12\uff10", "192.0.2.1:51820\u0085",
        # a scope id (an interface of the sender, which no peer has), link-local, a mesh IP
        "[fe80::1%eth0]:51820", "[2001:db8::5%evil0]:51820", "[fe80::1]:51820", "169.254.169.254:51820",
        "100.64.0.9:51820", "[::ffff:100.64.0.9]:51820"]],
    *[json.dumps({"public_key": low_order, "name": "a"}).encode() for low_order in [
        "A" * 43 + "=", "AQ" + "A" * 41 + "=", "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA="]],
    json.dumps({"public_key": KEY, "name": "a", "nonce": KEY}).encode(),  # a nonce without its proof
    json.dumps({"public_key": KEY, "name": "a", "listen_port": 0}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "listen_port": "51820"}).encode(),
    json.dumps({"public_key": KEY, "name": "a", "admin": True}).encode(),  # unknown field
]


async def counts(control):
    listed = await control.client.simulate_get("/v1/nodes", headers=control.admin)
    return listed.json["revision"], len(listed.json["nodes"])


@pytest.mark.parametrize("body", BAD_REGISTRATIONS)
async def test_bad_registration_is_a_400_and_writes_nothing(control, body):
    token = await control.join_token(reusable=True)
    before = await counts(control)
    result = await control.client.simulate_post("/v1/register", body=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert result.status_code == 400, result.text
    assert result.json["error"] == "invalid_request" and result.json["message"]
    assert await counts(control) == before


async def test_oversized_body_is_413(control):
    token = await control.join_token()
    huge = json.dumps({"public_key": KEY, "name": "a", "endpoint": "x" * (2 << 20)}).encode()
    result = await control.client.simulate_post("/v1/register", body=huge, headers={"Authorization": f"Bearer {token}"})
    assert result.status_code == 413 and result.json["error"] == "body_too_large"


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer mvj_nope", "Bearer mvn_nope", "Bearer mva_x"])
async def test_wrong_tokens_are_401_and_write_nothing(control, header):
    before = await counts(control)
    headers = {"Authorization": header} if header else {}
    result = await control.client.simulate_post("/v1/register", json={"public_key": KEY, "name": "a"}, headers=headers)
    assert result.status_code == 401 and result.json["error"] == "unauthorized"
    assert await counts(control) == before


@pytest.mark.parametrize("body", [
    {"applied_revision": -1}, {"applied_revision": "1"}, {"tunnels_down": "x"},
    {"applied_revision": 9223372036854775808}, {"applied_revision": 2**53}, {"applied_revision": 1e300},
    {"tunnels_down": [{"node_id": "a", "down_for": 1e308, "reason": "no_traffic"}]},
    {"tunnels_down": [{"node_id": "a\u202e", "down_for": 1, "reason": "no_traffic"}]},
    {"tunnels_down": [{"node_id": "x" * 33, "down_for": 1, "reason": "no_traffic"}]},
    {"tunnels_down": [{"node_id": "abc\n", "down_for": 1, "reason": "no_traffic"}]},
    {"tunnels_down": [{"node_id": "a", "down_for": -1, "reason": "no_traffic"}]},
    {"tunnels_down": [{"node_id": "a", "down_for": 1, "reason": "bored"}]},
    {"tunnels_down": [{"nodeid": "a"}]}, {"extra": 1},
    {"peers": [{"node_id": "a", "latest_handshake_age": 1}]}])  # no longer a field: refused as unknown
async def test_bad_heartbeat_is_400(control, body):
    node = await control.node(await control.join_token())
    result = await control.client.simulate_post(f"/v1/nodes/{node['node_id']}/heartbeat", json=body,
                                                headers=bearer(node))
    assert result.status_code == 400 and result.json["error"] == "invalid_request"


@pytest.mark.parametrize("params", [{"since": "-1"}, {"since": "x"}, {"wait": "soon"}, {"wait": "-3"},
                                    {"since": str(2**63)}, {"since": "1" * 40}, {"wait": "nan"}, {"wait": "inf"},
                                    {"wait": "1e999"}])
async def test_bad_netmap_parameters_are_400(control, params):
    node = await control.node(await control.join_token())
    result = await control.netmap(node, **params)
    assert result.status_code == 400 and result.json["message"]


@pytest.mark.parametrize("body", [{"ttl_seconds": 0}, {"ttl_seconds": "1h"}, {"reusable": "yes"},
                                  {"ttl_seconds": 1e300}, {"description": "a\u009bb"},
                                  {"description": "a\nb"}, {"uses": 3}])
async def test_bad_join_token_request_is_400(control, body):
    result = await control.client.simulate_post("/v1/join-tokens", json=body, headers=control.admin)
    assert result.status_code == 400 and result.json["error"] == "invalid_request"


async def test_unknown_routes_and_methods_are_json_errors(control):
    missing = await control.client.simulate_get("/v1/nothing")
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    wrong = await control.client.simulate_put("/v1/netmap")
    assert wrong.status_code == 405 and wrong.json["error"]
