"""Other web pages cannot drive the chat UI: Host, Origin, Content-Type and token checks.

The pure checks of `chat.guard`, then the app in-process (falcon's test client, a real
store, one offline peer so nothing leaves this machine), then a real `meshchat serve` driven
by the `meshchat` CLI, which finds the token in the pointer file.
"""
from __future__ import annotations

import json
import signal
import stat
import subprocess

import httpx
import pytest
from falcon import testing
from hypothesis import given
from hypothesis import strategies as st

from chat import guard
from chat.daemon import Chat
from chat.peers import Peer, View
from chat.store import Store
from chat.web import create_app
from tests.meshlab import MESHCHAT, wait_for
from tests.pg import free_port

TOKEN = "k3y-0f-th1s-da3m0n-Q2hhdCB0b2tlbiBmb3IgdGVzdHM"
LISTEN = "10.213.77.11"
PEER = "100.64.0.2"
ACCESS = guard.access_for(LISTEN, 7080, TOKEN)

# -- the pure checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("host, port, expected", [
    ("127.0.0.1", 7080, "127.0.0.1:7080"), ("::1", 7080, "[::1]:7080"), ("Node1.Lab", 80, "node1.lab:80"),
    ("fd00::A", 7080, "[fd00::a]:7080")])
def test_authority_is_written_as_browsers_write_host(host, port, expected):
    assert guard.authority(host, port) == expected


@pytest.mark.parametrize("host", ["10.213.77.11:7080", "127.0.0.1:7080", "localhost:7080", "LocalHost:7080",
                                  "[::1]:7080"])
def test_the_listen_address_and_loopback_are_accepted_hosts(host):
    assert guard.host_allowed(host, ACCESS)


@pytest.mark.parametrize("host", [None, "", "evil.example:7080", "evil.example", "127.0.0.1", "127.0.0.1:7081",
                                  "10.213.77.11", "10.213.77.12:7080", "localhost.:7080", "::1:7080",
                                  "127.0.0.1:7080.evil.example", "127.0.0.1:7080 "])
def test_any_other_host_is_refused(host):
    assert not guard.host_allowed(host, ACCESS)


@pytest.mark.parametrize("origin", ["http://127.0.0.1:7080", "http://10.213.77.11:7080", "http://localhost:7080",
                                    "http://[::1]:7080"])
def test_the_ui_own_origins_are_accepted(origin):
    assert guard.origin_allowed(origin, ACCESS)


@pytest.mark.parametrize("origin", ["null", "", "http://evil.example", "http://evil.example:7080",
                                    "https://127.0.0.1:7080", "http://127.0.0.1", "http://127.0.0.1:7081",
                                    "127.0.0.1:7080", "http://127.0.0.1:7080.evil.example",
                                    "http://127.0.0.1:7080/", "file://"])
def test_foreign_origins_are_refused(origin):
    assert not guard.origin_allowed(origin, ACCESS)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON"])
def test_json_is_json(content_type):
    assert guard.is_json(content_type)


@pytest.mark.parametrize("content_type", [None, "", "application/x-www-form-urlencoded", "text/plain",
                                          "multipart/form-data; boundary=x", "application/jsonp", "text/json"])
def test_what_a_cross_site_form_can_send_is_not_json(content_type):
    assert not guard.is_json(content_type)


@given(st.one_of(st.none(), st.text()))
def test_only_the_token_itself_matches(given_token):
    assert guard.token_matches(given_token, TOKEN) == (given_token == TOKEN)


def test_tokens_are_new_and_long():
    tokens = {guard.new_token() for _ in range(20)}
    assert len(tokens) == 20 and all(len(t) >= 43 for t in tokens)


@pytest.mark.parametrize("method, host, origin, content_type, token, status", [
    ("GET", "127.0.0.1:7080", None, None, None, None),
    ("GET", "evil.example:7080", None, None, None, 421),
    ("POST", "evil.example:7080", "http://evil.example:7080", "application/json", TOKEN, 421),
    ("GET", "127.0.0.1:7080", "http://evil.example", None, None, 403),
    ("POST", "127.0.0.1:7080", "http://evil.example", "application/json", TOKEN, 403),
    ("POST", "127.0.0.1:7080", None, "application/x-www-form-urlencoded", TOKEN, 415),
    ("DELETE", "127.0.0.1:7080", None, None, TOKEN, 415),
    ("POST", "127.0.0.1:7080", None, "application/json", None, 403),
    ("PUT", "127.0.0.1:7080", None, "application/json", "wrong", 403),
    ("POST", "127.0.0.1:7080", "http://127.0.0.1:7080", "application/json", TOKEN, None),
    ("POST", "10.213.77.11:7080", "http://10.213.77.11:7080", "application/json", TOKEN, None),
])
def test_refusal_checks_host_then_origin_then_content_type_then_token(method, host, origin, content_type, token,
                                                                       status):
    refused = guard.refusal(ACCESS, method, host, origin, content_type, token)
    assert (refused.status if refused else None) == status


# -- the app, in-process ----------------------------------------------------------------------------


@pytest.fixture
def chat(tmp_path):
    chat = Chat(tmp_path, Store(tmp_path / "chat.db"))
    chat.view = View("100.64.0.1", "node1", {PEER: Peer("node2", PEER, online=False, configured=True)})
    return chat


@pytest.fixture
def client(chat):
    return testing.TestClient(create_app(chat, ACCESS))


def call(client, method, path, host="127.0.0.1", origin=None, token=None, **kwargs):
    headers = {key: value for key, value in {"Origin": origin, guard.TOKEN_HEADER: token}.items() if value}
    return client.simulate_request(method, path, host=host, port=7080, headers=headers, **kwargs)


def test_the_page_carries_the_token_and_its_own_calls_go_through(client, chat):
    page = call(client, "GET", "/")
    assert page.status_code == 200
    assert f'<meta name="meshchat-token" content="{TOKEN}">' in page.text
    assert page.headers["cache-control"] == "no-store"
    # What app.js does: JSON, the token from the page, the page's origin.
    sent = call(client, "POST", "/api/messages", origin="http://127.0.0.1:7080", token=TOKEN,
                json={"peer": PEER, "text": "hello"})
    assert sent.status_code == 200 and sent.json["reason"] == "peer offline"
    retried = call(client, "POST", f"/api/messages/{sent.json['id']}/retry", origin="http://127.0.0.1:7080",
                   token=TOKEN, content_type="application/json")
    assert retried.status_code == 200
    assert [m["text"] for m in call(client, "GET", "/api/messages", params={"peer": PEER}).json["messages"]] \
        == ["hello"]


@pytest.mark.parametrize("origin", ["http://evil.example", None])
def test_a_cross_site_form_post_is_refused_and_sends_nothing(client, chat, origin):
    answer = call(client, "POST", "/api/messages", origin=origin, body=f"peer={PEER}&text=pwned",
                  content_type="application/x-www-form-urlencoded")
    assert answer.status_code in (403, 415) and answer.json["description"]
    assert chat.store.history(PEER) == []


@pytest.mark.parametrize("token", [None, "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper()])
def test_a_post_without_the_right_token_is_403_and_sends_nothing(client, chat, token):
    answer = call(client, "POST", "/api/messages", token=token, json={"peer": PEER, "text": "pwned"})
    assert answer.status_code == 403 and guard.TOKEN_HEADER in answer.json["description"]
    assert chat.store.history(PEER) == []


def test_a_retry_without_the_token_is_403(client, chat):
    row = chat.store.outgoing("a1b2c3d4e5", PEER, "queued")
    chat.store.mark(row["id"], PEER, "failed", "peer offline")
    answer = call(client, "POST", f"/api/messages/{row['id']}/retry", content_type="application/json")
    assert answer.status_code == 403
    assert chat.store.get_outgoing(row["id"])["state"] == "failed"


@pytest.mark.parametrize("path, params", [("/", None), ("/api/state", None), ("/api/messages", {"peer": PEER}),
                                          ("/static/index.html", None)])
def test_a_foreign_host_gets_nothing(client, chat, path, params):
    chat.store.incoming("f6e5d4c3b2", PEER, "a secret")
    answer = call(client, "GET", path, host="evil.example", params=params)
    assert answer.status_code == 421
    assert "a secret" not in answer.text and TOKEN not in answer.text and "100.64.0.1" not in answer.text


@pytest.mark.parametrize("method, path, kwargs", [
    ("GET", "/api/messages", {"params": {"peer": PEER}}),
    ("POST", "/api/messages", {"json": {"peer": PEER, "text": "pwned"}, "token": TOKEN}),
])
def test_a_foreign_origin_is_403(client, chat, method, path, kwargs):
    chat.store.incoming("f6e5d4c3b2", PEER, "a secret")
    answer = call(client, method, path, origin="http://evil.example:7080", **kwargs)
    assert answer.status_code == 403 and "a secret" not in answer.text
    assert [m["text"] for m in chat.store.history(PEER)] == ["a secret"]


# -- a real daemon and its CLI ------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path):
    port = free_port()
    with open(tmp_path / "chat.log", "wb") as log:
        proc = subprocess.Popen([MESHCHAT, "--state-dir", str(tmp_path), "serve", "--ui-listen", f"127.0.0.1:{port}",
                                 "--port", str(free_port())], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "chat.json").exists() and ui_answers(port), 15, what="meshchat serve")
        yield tmp_path, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def ui_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def meshchat(state_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MESHCHAT, "--state-dir", str(state_dir), *args], capture_output=True, text=True,
                          timeout=30)


def test_the_cli_reads_the_token_from_a_private_pointer_file(daemon):
    state_dir, ui = daemon
    pointer = state_dir / "chat.json"
    assert stat.S_IMODE(pointer.stat().st_mode) == 0o600
    token = json.loads(pointer.read_text())["token"]
    assert len(token) >= 43 and token in httpx.get(ui).text

    peers = meshchat(state_dir, "peers", "--json")
    assert peers.returncode == 0 and json.loads(peers.stdout)["agent"] == "unreachable"
    sent = meshchat(state_dir, "send", PEER, "hello")  # past the guard: refused by the daemon, not by it
    assert sent.returncode == 2 and "not a peer" in sent.stderr, sent.stderr
    assert meshchat(state_dir, "history", PEER).returncode == 0

    assert httpx.post(ui + "/api/messages", json={"peer": PEER, "text": "x"}).status_code == 403
    assert httpx.get(ui + "/api/state", headers={"Host": "evil.example"}).status_code == 421


def test_serve_refuses_a_wildcard_ui_address(tmp_path):
    done = meshchat(tmp_path, "serve", "--ui-listen", "0.0.0.0:7080")
    assert done.returncode != 0 and "wildcard" in done.stderr
