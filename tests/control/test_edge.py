"""Reading a request at the edge: bearer, long-poll parameters, bounded bodies, plain arguments (no server)."""
import ipaddress

import falcon
import pytest
from falcon import testing

from control.api import edge, schemas
from control.rules.errors import BodyTooLarge, InvalidRequest
from control.rules.records import HeartbeatSent, Registration, ReportedDown

pytestmark = pytest.mark.anyio


def request(headers: dict | None = None, query: str = "", body: bytes = b""):
    return testing.create_asgi_req(headers=headers, query_string=query, body=body)


@pytest.mark.parametrize("header, token", [("Bearer mvn_x", "mvn_x"), ("bearer  mvn_x ", "mvn_x"), ("Bearer", None),
                                           ("Basic abc", None), ("Bearer  ", None), (None, None)])
def test_bearer(header, token):
    assert edge.bearer(request({"Authorization": header} if header else {})) == token


@pytest.mark.parametrize("query, etag, expected", [
    ("", None, (None, 0.0)), ("since=5&wait=2.5", None, (5, 2.5)), ("", '"r7"', (7, 0.0)),
    ("", 'W/"r7"', (7, 0.0)), ("since=3", '"r7"', (3, 0.0)), ("", '"x7"', (None, 0.0)),
    ("", '"r' + "9" * 17 + '"', (None, 0.0))])
def test_since_comes_from_the_query_or_the_etag(query, etag, expected):
    assert edge.wait_params(request({"If-None-Match": etag} if etag else {}, query)) == expected


@pytest.mark.parametrize("query", ["wait=nan", "wait=inf", "since=-1", f"since={2**53}"])
def test_unbounded_parameters_are_refused(query):
    with pytest.raises((InvalidRequest, falcon.HTTPInvalidParam)):  # both are a 400 with a JSON body
        edge.wait_params(request(query=query))


async def test_a_body_is_bounded_and_decoded_into_its_schema():
    reader = edge.BodyReader(max_body=64, body_timeout=1.0)
    beat = await reader.read(request(body=b'{"applied_revision": 3}'), schemas.HeartbeatBody)
    assert beat.applied_revision == 3 and (await reader.read(request(), schemas.HeartbeatBody)).tunnels_down is None
    with pytest.raises(BodyTooLarge):
        await reader.read(request(body=b"{" + b" " * 64 + b"}"), schemas.HeartbeatBody)
    with pytest.raises(InvalidRequest):
        await reader.read(request(body=b'{"extra": 1}'), schemas.HeartbeatBody)


def test_schemas_become_the_registry_s_plain_arguments():
    register = schemas.RegisterBody(public_key="A" * 42 + "E=", name="a", endpoint="192.0.2.1:51820")
    prefix = ipaddress.ip_network("100.64.0.0/10")
    assert edge.registration(register, "127.0.0.1", prefix) == Registration("A" * 42 + "E=", "a", 51820,
                                                                             "192.0.2.1:51820")
    assert edge.registration(register, "198.51.100.7", prefix).reflexive_endpoint == "198.51.100.7:51820"
    assert edge.registration(register, "100.64.0.7", prefix).reflexive_endpoint is None  # over the mesh
    request_ = edge.join_token_request(schemas.JoinTokenCreateBody(reusable=True, ttl_seconds=None))
    assert (request_.reusable, request_.ttl_seconds, request_.description) == (True, None, "")


async def test_a_heartbeat_is_one_report_with_the_address_it_came_from():
    reader, source = edge.BodyReader(max_body=1024, body_timeout=1.0), edge.Source(())
    body = b'{"applied_revision": 4, "tunnels_down": [{"node_id": "n2", "down_for": 1.5, "reason": "no_traffic"}]}'
    sent = await edge.read_heartbeat(request(body=body), reader, source)
    assert sent == HeartbeatSent(4, "127.0.0.1", (ReportedDown("n2", 1.5, "no_traffic"),))
    assert (await edge.read_heartbeat(request(), reader, source)).tunnels_down is None  # not reported: unchanged
    none_down = await edge.read_heartbeat(request(body=b'{"tunnels_down": []}'), reader, source)
    assert none_down.tunnels_down == ()  # reported: none down
