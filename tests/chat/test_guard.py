"""chat.guard's pure checks: Host, Origin, Content-Type and token, in the order a request meets them."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat import guard

TOKEN = "k3y-0f-th1s-da3m0n-Q2hhdCB0b2tlbiBmb3IgdGVzdHM"
LISTEN = "10.213.77.11"
ACCESS = guard.access_for(LISTEN, 7080, TOKEN)


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
