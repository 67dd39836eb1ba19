"""The control-plane client against a mock transport (no network): answers read through the wire
contract, errors classified, failover, and the netmap stream with its keepalives."""
import base64
import json
import os

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.client import ControlClient, Gone, Refused, TemporaryError
from meshcommon.contract import keys, wire
from tests.agent.data import ME, entry

pytestmark = pytest.mark.anyio

CONTROL = X25519PrivateKey.generate()
CONTROL_KEY = base64.b64encode(CONTROL.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
NONCE = os.urandom(32)
PRIVATE = keys.new_private_key()
REGISTERED = {"node_id": "n1", "name": "alpha", "mesh_ip": "100.64.0.1", "mesh_prefix": "100.64.0.0/10",
              "node_token": "mvn_x", "heartbeat_interval": 2.0, "offline_after": 6.0, "revision": 3}
NETMAP = {"revision": 4, "mesh_prefix": "100.64.0.0/10", "self": ME, "peers": [entry("a", "100.64.0.2"), "junk"],
          "delta": False}


def client(handler, urls=("http://one", "http://two")) -> ControlClient:
    return ControlClient(list(urls), transport=httpx.MockTransport(handler))


def sse(*events: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content="".join(events).encode())


async def collect(made: ControlClient, since=None) -> tuple[list, Exception]:
    answers = []
    with pytest.raises((TemporaryError, Gone)) as ended:
        async for answer in made.watch("mvn_x", since):
            answers.append(answer)
    return answers, ended.value


async def test_register_proves_key_possession_and_reads_the_answer_through_the_contract():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/challenge":
            return httpx.Response(200, json={"nonce": base64.b64encode(NONCE).decode(), "control_key": CONTROL_KEY,
                                             "expires_in": 60})
        return httpx.Response(200, json=REGISTERED)

    made = client(handler)
    public = keys.public_key_of(PRIVATE)
    answer = await made.register("mvj_join", {"public_key": public, "name": "alpha"}, PRIVATE)
    assert answer == wire.Registered(**REGISTERED)
    body = json.loads(seen[1].content)
    assert keys.verify(CONTROL, public, NONCE, body["proof"]) and body["name"] == "alpha"
    assert all(r.headers["authorization"] == "Bearer mvj_join" for r in seen)
    await made.close()


@pytest.mark.parametrize("challenge, register", [
    ({"nonce": "short", "control_key": CONTROL_KEY, "expires_in": 60}, REGISTERED),
    ({"nonce": 5}, REGISTERED),
    ({"nonce": base64.b64encode(NONCE).decode(), "control_key": CONTROL_KEY, "expires_in": 60}, {"node_id": "n1"}),
])
async def test_an_answer_that_does_not_fit_the_contract_is_temporary(challenge, register):
    def handler(request):
        return httpx.Response(200, json=challenge if request.url.path == "/v1/challenge" else register)

    made = client(handler)
    with pytest.raises(TemporaryError, match="malformed"):
        await made.register("mvj_join", {"public_key": keys.public_key_of(PRIVATE)}, PRIVATE)


async def test_heartbeat_answers_are_read_through_the_contract():
    made = client(lambda request: httpx.Response(200, json={"revision": 9, "heartbeat_interval": 1.5,
                                                            "offline_after": 4.5}))
    assert await made.heartbeat("n1", "mvn_x", {}) == wire.HeartbeatAnswer(9, 1.5, 4.5)


@pytest.mark.parametrize("status, error", [(401, Gone), (403, Refused), (409, Refused), (500, TemporaryError),
                                           (503, TemporaryError)])
async def test_errors_are_classified_and_only_server_errors_fail_over(status, error):
    made = client(lambda request: httpx.Response(status, json={"error": "x", "message": "told so"}))
    with pytest.raises(error, match=f"{status}: told so"):
        await made.heartbeat("n1", "mvn_x", {})
    assert made.url == ("http://two" if error is TemporaryError else "http://one")


async def test_an_unreachable_url_fails_over_to_the_next():
    def handler(request):
        if request.url.host == "one":
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"revision": 1, "heartbeat_interval": 2, "offline_after": 6})

    made = client(handler)
    with pytest.raises(TemporaryError, match="http://one"):
        await made.heartbeat("n1", "mvn_x", {})
    assert (await made.heartbeat("n1", "mvn_x", {})).revision == 1 and made.url == "http://two"


async def test_a_heartbeat_waits_only_its_own_timeout_and_a_silent_control_plane_is_left_for_the_next():
    seen = []

    def handler(request):
        seen.append(request)
        if request.url.host == "one":
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json={"revision": 1, "heartbeat_interval": 2, "offline_after": 6})

    made = client(handler)
    with pytest.raises(TemporaryError, match="http://one"):
        await made.heartbeat("n1", "mvn_x", {}, timeout=2.0)
    assert seen[0].extensions["timeout"] == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}
    assert (await made.heartbeat("n1", "mvn_x", {})).revision == 1 and made.url == "http://two"
    assert seen[1].extensions["timeout"]["read"] == 45.0  # without one: the client's, sized for the stream


async def test_leave_deletes_this_node():
    seen = []
    made = client(lambda request: seen.append(request) or httpx.Response(204))
    await made.leave("n1", "mvn_x")
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/v1/nodes/n1")


async def test_keepalives_are_not_errors_and_answers_keep_their_entries_raw():
    seen = []

    def handler(request):
        seen.append(request)
        return sse(": keepalive\n\n", f"event: netmap\ndata: {json.dumps(NETMAP)}\n\n", "data:\n\n", ":\n\n",
                   f"event: netmap\ndata: {json.dumps({**NETMAP, 'revision': 5})}\n\n")

    answers, ended = await collect(client(handler), since=3)
    assert [a.revision for a in answers] == [4, 5] and isinstance(answers[0], wire.FullNetmap)
    assert [msgspec.json.decode(p) for p in answers[0].peers] == NETMAP["peers"]
    assert isinstance(ended, TemporaryError) and "stream ended" in str(ended)
    assert seen[0].url.params["since"] == "3" and seen[0].url.params["stream"] == "true"


async def test_an_error_event_means_the_node_is_gone():
    answers, ended = await collect(client(lambda request: sse(
        'event: error\ndata: {"error": "unauthorized", "message": "this node was removed"}\n\n')))
    assert answers == [] and isinstance(ended, Gone) and str(ended) == "this node was removed"


async def test_an_error_event_of_any_other_kind_is_temporary_never_gone():
    answers, ended = await collect(client(lambda request: sse(
        'event: error\ndata: {"error": "too_many_requests", "message": "4 netmap streams are open"}\n\n')))
    assert answers == [] and isinstance(ended, TemporaryError) and "4 netmap streams" in str(ended)


@pytest.mark.parametrize("data", ["{not json", json.dumps({"revision": 1}), json.dumps({**NETMAP, "self": "me"})])
async def test_a_malformed_netmap_event_ends_the_stream_as_temporary(data):
    answers, ended = await collect(client(lambda request: sse(f"event: netmap\ndata: {data}\n\n")))
    assert answers == [] and isinstance(ended, TemporaryError) and "malformed netmap event" in str(ended)


async def test_a_refused_stream_is_classified_like_any_answer():
    made = client(lambda request: httpx.Response(401, json={"message": "unknown node token"}))
    _, ended = await collect(made)
    assert isinstance(ended, Gone) and made.url == "http://one"
    made = client(lambda request: httpx.Response(502, text="bad gateway"))
    _, ended = await collect(made)
    assert isinstance(ended, TemporaryError) and made.url == "http://two"


def test_at_least_one_url_is_needed():
    with pytest.raises(ValueError):
        ControlClient([])
