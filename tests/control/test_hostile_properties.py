"""Properties over hostile input: nothing a node or a token holder sends to register or heartbeat
can make a later valid heartbeat of another node fail, or the control plane answer 5xx."""
import ipaddress
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.rules.reflexive import client_address
from control.store.models import Node
from testbed.enrol import new_key
from tests.control.support import bearer

pytestmark = pytest.mark.anyio

numbers = (st.integers() | st.integers(min_value=2**53 - 2, max_value=2**64 + 2)
           | st.floats(allow_nan=False, allow_infinity=False) | st.just(10**400))
texts = st.text(max_size=60) | st.sampled_from(["0.0.0.0:1", "evil.example:51820", "999.1.1.1:51820",
                                                "[fe80::1%eth0]:51820", "192.0.2.1:051820", "A" * 43 + "="])
json_values = st.recursive(st.none() | st.booleans() | numbers | texts,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                           max_leaves=12)
tunnels_down = st.lists(st.dictionaries(st.sampled_from(["node_id", "down_for", "reason", "x"]),
                                        json_values | numbers, max_size=4), max_size=5)
raw = st.sampled_from([b'{"applied_revision": 1e999}', b'{"applied_revision": NaN}',
                       b'{"tunnels_down": [{"node_id": "a", "down_for": -1e999, "reason": "no_traffic"}]}',
                       b'{"applied_revision": 1' + b"0" * 400 + b"}",
                       b"\xff\xfe", b'{"applied_revision": 1, "applied_revision": 99999999999999999999}'])
# Nesting far deeper than any decoder recurses, inside any field or at the top.
CLOSERS = {b"[": b"]", b'{"a":': b"}"}
deep = st.builds(lambda depth, opener, inner: opener * depth + inner + CLOSERS[opener] * depth,
                 st.integers(100, 200_000), st.sampled_from(list(CLOSERS)), st.sampled_from([b"1.0", b"null", b'"x"']))
nested = st.builds(lambda field, body: b'{"' + field + b'": ' + body + b"}",
                   st.sampled_from([b"applied_revision", b"tunnels_down", b"name", b"public_key", b"endpoint", b"x"]),
                   deep) | deep
heartbeats = (st.fixed_dictionaries({}, optional={"applied_revision": json_values | numbers,
                                                  "tunnels_down": tunnels_down})
              | json_values | raw | nested)
registrations = (st.fixed_dictionaries({"public_key": texts, "name": texts},
                                       optional={"listen_port": json_values | numbers, "endpoint": texts,
                                                 "nonce": texts, "proof": texts})
                 | json_values | raw | nested)
HOSTILE = settings(max_examples=60, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def encode(value) -> bytes:
    return json.dumps(value, allow_nan=False).encode() if not isinstance(value, bytes) else value


async def valid_heartbeat_still_lands(control, good):
    control.clock.now += 0.5
    beat = await control.heartbeat(good, applied_revision=1)
    assert beat.status_code == 200
    await control.runtime.heartbeats.flush()
    assert control.runtime.heartbeats.pending == {}
    assert Node.get_by_id(good["node_id"]).last_seen == control.clock.now


@HOSTILE
@given(body=heartbeats)
async def test_no_heartbeat_body_hurts_another_node(control, body):
    token = await control.join_token(reusable=True)
    evil, good = await control.node(token, "evil"), await control.node(token, "good")
    result = await control.client.simulate_post(f"/v1/nodes/{evil['node_id']}/heartbeat", body=encode(body),
                                                headers={**bearer(evil), "Content-Type": "application/json"})
    assert result.status_code in (200, 400, 413), result.text  # 413: a body past max_body
    await valid_heartbeat_still_lands(control, good)


@HOSTILE
@given(body=registrations, use_node_token=st.booleans())
async def test_no_registration_body_hurts_another_node(control, body, use_node_token):
    token = await control.join_token(reusable=True)
    evil, good = await control.node(token, "evil"), await control.node(token, "good")
    used = evil["node_token"] if use_node_token else token
    result = await control.client.simulate_post("/v1/register", body=encode(body),
                                                headers={"Authorization": f"Bearer {used}",
                                                         "Content-Type": "application/json"})
    assert result.status_code < 500, result.text
    await valid_heartbeat_still_lands(control, good)
    netmap = await control.netmap(good)
    assert netmap.status_code == 200 and all(p["public_key"] != "A" * 43 + "=" for p in netmap.json["peers"])


def test_new_key_is_a_real_key_pair():
    assert len(new_key()) == 44


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 1 << 20), shape=st.sampled_from(["spaces", "proxies", "entries", "garbage"]),
       tail=st.sampled_from(["", ", 203.0.113.9", ", 10.9.0.2", ",", " ,x"]))
def test_any_forwarded_for_header_from_a_trusted_proxy_is_an_address_or_none(size, shape, tail):
    trusted = (ipaddress.ip_network("10.9.0.0/16"),)
    header = {"spaces": " " * size, "proxies": ("10.9.0.2, " * (size // 10 + 1))[:size],
              "entries": ("203.0.113.9, " * (size // 13 + 1))[:size],
              "garbage": ("\x7f,%$[" * (size // 5 + 1))[:size]}[shape] + tail
    found = client_address("10.9.0.1", header, trusted)
    assert found is None or ipaddress.ip_address(found)
