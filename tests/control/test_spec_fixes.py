"""What the OpenAPI spec says about request bodies is what the server does.

The rules Register checks in code (endpoint, low-order keys, nonce with proof) are restated in JSON
Schema by control/api/openapi.py; these tests hold the two together, judging the spec as a JSON Schema
validator does (ECMA-262 patterns: `$` is the end of the string). Also the spec's "an empty body
is `{}`" for heartbeats and join tokens.
"""
import json
import re

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.api import schemas
from control.api.openapi import build_spec
from meshcommon.contract import endpoint, keys
from testbed.enrol import new_key
from tests.control.support import bearer

SPEC = build_spec()
REGISTER = SPEC["components"]["schemas"]["RegisterBody"]
ENDPOINT = next(option for option in REGISTER["properties"]["endpoint"]["anyOf"] if option.get("type") == "string")


VALIDATOR = jsonschema_rs.Draft202012Validator({"$ref": "#/components/schemas/RegisterBody", **SPEC})


def spec_accepts(body: dict) -> bool:
    return VALIDATOR.is_valid(body)


def server_accepts(body: dict) -> bool:
    try:
        schemas.decode(json.dumps(body).encode(), schemas.RegisterBody)
        return True
    except ValueError:
        return False


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(ENDPOINT["pattern"][1:-1], fullmatch=True)
       | st.from_regex(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]{1,15})?\]):[1-9]\d{0,4}",
                       fullmatch=True)
       | st.from_regex(r"(0|1|127|22[0-9]|23[0-9]|255)(\.[0-9]{1,3}){3}:[0-9]{1,6}", fullmatch=True)
       | st.from_regex(r"\[[0-9:.fF]{1,12}(%[a-z]{1,3})?\]:1", fullmatch=True))
def test_the_spec_accepts_the_endpoints_the_server_accepts(text):
    assert spec_accepts({"public_key": new_key(), "name": "a", "endpoint": text}) == endpoint.is_valid(text)


@pytest.mark.parametrize("text", ["[::1]:1", "[0:0::0:1]:1", "[::0.0.0.1]:1", "[::]:1", "[ff02::1%eth0]:1",
                                  "127.0.0.1:1", "0.0.0.0:1", "239.1.1.1:1", "255.255.255.255:1", "1.2.3.4:65536",
                                  "1.2.3.04:1", "[::1:2:3:4:5:6:7:8]:1", "[fe80::1%eth0]:51820",
                                  "[::ffff:127.0.0.1]:1", "[ff::1]:1", "0.1.2.3:1", "240.0.0.1:65535",
                                  "[::ffff:192.0.2.1]:1", "[::ffff:7f00:1]:1", "[0:0:0:0:0:ffff:1:2]:1",
                                  "[0::0:0:ffff:1.2.3.4]:1", "[::FFFF:1:2%eth0]:1", "[::ffff:1]:1",
                                  "[::ffff:1:2:3]:1", "[1::ffff:1:2]:1", "[::0:ffff:1:2]:1",
                                  "[fe80::1]:1", "[febf::1]:1", "[fec0::1]:1", "[fe7f::1]:1", "169.254.169.254:1",
                                  "169.254.0.1:1", "169.253.0.1:1", "[2001:db8::5%evil0]:1"])
def test_the_spec_and_the_server_agree_on_edge_endpoints(text):
    assert spec_accepts({"public_key": new_key(), "name": "a", "endpoint": text}) == endpoint.is_valid(text)


@pytest.mark.parametrize("key", REGISTER["properties"]["public_key"]["not"]["enum"])
def test_the_low_order_keys_the_spec_names_are_refused(key):
    assert re.fullmatch(schemas.B64_32[1:-1], key)  # the pattern alone would take them
    assert not keys.is_valid_public_key(key) and not spec_accepts({"public_key": key, "name": "a"})


@pytest.mark.parametrize("extra", [{}, {"nonce": None}, {"proof": None}, {"nonce": None, "proof": None},
                                   {"nonce": "N"}, {"proof": "P"}, {"nonce": "N", "proof": None},
                                   {"nonce": None, "proof": "P"}, {"nonce": "N", "proof": "P"}])
def test_the_spec_says_nonce_and_proof_go_together(extra):
    nonce = new_key()  # any base64 of 32 bytes
    body = {"public_key": new_key(), "name": "a", **{k: v and nonce for k, v in extra.items()}}
    paired = (body.get("nonce") is None) == (body.get("proof") is None)
    assert spec_accepts(body) == server_accepts(body) == paired


@pytest.mark.anyio
async def test_an_empty_heartbeat_body_is_an_empty_heartbeat(control):
    node = await control.node(await control.join_token())
    result = await control.client.simulate_post(f"/v1/nodes/{node['node_id']}/heartbeat", headers=bearer(node))
    assert result.status_code == 200 and set(result.json) == {"revision", "heartbeat_interval", "offline_after"}


@pytest.mark.anyio
async def test_an_empty_join_token_body_is_the_default_token(control):
    result = await control.client.simulate_post("/v1/join-tokens", headers=control.admin)
    assert result.status_code == 201 and result.json["reusable"] is False and result.json["state"] == "active"
