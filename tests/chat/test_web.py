"""chat.web in-process: other web pages cannot drive the UI, the page's own calls go through.

Falcon's test client around the real app, a real store, and one offline peer so that nothing
leaves this machine.
"""
from __future__ import annotations

import pytest
from falcon import testing

from chat import guard
from chat.daemon import Chat
from chat.peers import Peer, View
from chat.store import Store
from chat.web import create_app

TOKEN = "k3y-0f-th1s-da3m0n-Q2hhdCB0b2tlbiBmb3IgdGVzdHM"
PEER = "100.64.0.2"
ACCESS = guard.access_for("10.213.77.11", 7080, TOKEN)


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
