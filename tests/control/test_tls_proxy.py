"""The control plane behind HAProxy terminating TLS, as roles/meshvpn_control runs it with
`meshvpn_control_tls_proxy`: real processes, the role's own haproxy.cfg.j2 (rendered by testbed/tls_proxy.py).

The control plane listens on plain HTTP on loopback and trusts X-Forwarded-For from 127.0.0.1 (its
`trusted_proxies`), where HAProxy connects from: only the template's
`http-request set-header X-Forwarded-For %[src]` keeps a client from choosing the address the control
plane records as its reflexive endpoint.
"""
from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent

from testbed import enrol, tls_proxy
from testbed.certs import certificate
from testbed.control_process import ControlProcess
from tests.control.support import bearer

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not tls_proxy.available(), reason="haproxy is not installed")]

FORGED = "203.0.113.9"  # a public address a client claims in X-Forwarded-For
LISTEN_PORT = 51999
FORGING = {"X-Forwarded-For": FORGED}


@dataclass
class Site:
    control: ControlProcess  # plain HTTP on 127.0.0.1, trusting 127.0.0.1/32
    url: str  # HTTPS through HAProxy
    verify: ssl.SSLContext  # the test CA (the self-signed certificate HAProxy serves)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("tls-proxy")
    cert, key = certificate(directory)
    control = ControlProcess(directory / "state", settings={"trusted_proxies": f"{tls_proxy.ADDRESS}/32"})
    proxy = tls_proxy.HAProxy(directory, cert, key, control.port, maxconn=64)
    try:
        control.start()
        proxy.start()
        yield Site(control, f"https://{tls_proxy.ADDRESS}:{proxy.port}", ssl.create_default_context(cafile=str(cert)))
    finally:
        proxy.stop()
        control.stop()


def listed(site: Site, node: dict) -> dict:
    """The node as the admin's node list shows it."""
    answer = httpx.get(site.url + "/v1/nodes", headers=site.control.admin, verify=site.verify, timeout=10)
    answer.raise_for_status()
    return next(shown for shown in answer.json()["nodes"] if shown["node_id"] == node["node_id"])


def heartbeat(site: Site, client: httpx.Client, url: str, node: dict, applied: int, expect: str | None) -> dict:
    """Heartbeat every second as an agent does (with a forged X-Forwarded-For, if `client` sends one)
    until the node as listed shows a heartbeat (`applied`) with the reflexive endpoint `expect`, or
    for 10 s; the node as last listed. Heartbeats are stored in batches, a new source address counts
    from its second heartbeat, and the list follows the store: each can lag a moment."""
    deadline = time.monotonic() + 10
    while True:
        answer = client.post(f"{url}/v1/nodes/{node['node_id']}/heartbeat", json={"applied_revision": applied},
                             headers=bearer(node))
        assert answer.status_code == 200, answer.text
        beat_until = min(deadline, time.monotonic() + 1.0)
        while ((shown := listed(site, node))["applied_revision"], shown["reflexive_endpoint"]) != (applied, expect):
            if time.monotonic() > beat_until:
                break
            time.sleep(0.05)
        if (shown["applied_revision"], shown["reflexive_endpoint"]) == (applied, expect) or time.monotonic() > deadline:
            break
    assert shown["applied_revision"] == applied, f"the heartbeat was not stored: {shown}"
    return shown


def test_a_forwarded_for_a_client_forges_does_not_pass_the_proxy(site):
    token = site.control.join_token(reusable=True)
    forged_endpoint = f"{FORGED}:{LISTEN_PORT}"
    with httpx.Client(headers=FORGING, verify=site.verify, timeout=30) as through_proxy:
        answer = enrol.register_sync(site.url, token, "behind", client=through_proxy, listen_port=LISTEN_PORT)
        assert answer.status_code == 200, answer.text
        node = answer.json()
        registered = listed(site, node)["reflexive_endpoint"]
        beat = heartbeat(site, through_proxy, site.url, node, applied=0, expect=None)
        seen = {"registered": registered, "heartbeat": beat["reflexive_endpoint"]}
    # HAProxy connects from 127.0.0.1 and says so: loopback, no address a peer could use.
    assert seen == {"registered": None, "heartbeat": None}, \
        f"a client's X-Forwarded-For: {FORGED} passed HAProxy to the control plane"

    # The same header sent straight to the control plane from 127.0.0.1, its trusted proxy, is
    # believed, by heartbeats and registrations: HAProxy's overwrite is all that stands in between.
    with httpx.Client(headers=FORGING, timeout=30) as direct:
        shown = heartbeat(site, direct, site.control.url, node, applied=1, expect=forged_endpoint)
        assert shown["reflexive_endpoint"] == forged_endpoint
        answer = enrol.register_sync(site.control.url, token, "direct", client=direct, listen_port=LISTEN_PORT)
        assert answer.status_code == 200, answer.text
        assert listed(site, answer.json())["reflexive_endpoint"] == forged_endpoint


def events(stream: httpx.Response) -> Iterator[ServerSentEvent]:
    """The stream's server-sent events, keepalive comments skipped (httpx_sse dispatches them empty)."""
    return (event for event in EventSource(stream).iter_sse() if event.data)


def test_health_and_a_netmap_stream_pass_the_proxy_over_tls(site):
    health = httpx.get(site.url + "/healthz", verify=site.verify, timeout=10)
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    with pytest.raises(httpx.ConnectError):
        httpx.get(site.url + "/healthz", timeout=10)  # the certificate is the test CA's, trusted by nothing else

    token = site.control.join_token(reusable=True)
    with httpx.Client(verify=site.verify, timeout=10) as client:
        node = enrol.register_sync(site.url, token, "watcher", client=client).json()
        with client.stream("GET", site.url + "/v1/netmap", params={"stream": "true"}, headers=bearer(node)) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            received = events(stream)
            first = next(received)
            assert first.event == "netmap" and json.loads(first.data)["revision"] == int(first.id)
            # A change arrives on the open stream, not held back by the proxy (another connection).
            joiner = enrol.register_sync(site.url, token, "joiner", client=client).json()
            change = next(received)
    assert change.event == "netmap" and int(change.id) > int(first.id)
    assert joiner["node_id"] in change.data


def handshake(port: int, verify: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection through HAProxy with one request answered; OSError when HAProxy refuses it."""
    raw = socket.create_connection((tls_proxy.ADDRESS, port), timeout=5)
    try:
        conn = verify.wrap_socket(raw, server_hostname=tls_proxy.ADDRESS)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n")
        if not conn.recv(4096).startswith(b"HTTP/1.1 200"):
            raise OSError("no answer")
        return conn
    except BaseException:
        raw.close()
        raise


def test_haproxy_holds_one_address_to_its_share_of_connections(site, tmp_path):
    """Behind HAProxy every connection reaches the control plane from loopback, exempt from its
    per-address cap: HAProxy applies the cap (`meshvpn_control_tls_proxy_per_address`) instead."""
    cert, key = certificate(tmp_path)
    proxy = tls_proxy.HAProxy(tmp_path, cert, key, site.control.port, maxconn=64, name="capped", per_address=2)
    verify = ssl.create_default_context(cafile=str(cert))
    proxy.start()
    try:
        held = [handshake(proxy.port, verify) for _ in range(2)]
        with pytest.raises(OSError):
            handshake(proxy.port, verify)  # a third from the same address: refused on accept
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the closed one leaves the count once HAProxy has seen it close
            try:
                held.append(handshake(proxy.port, verify))
                break
            except OSError:
                assert time.monotonic() < deadline, "a connection closed did not give its place back"
                time.sleep(0.1)
        for conn in held:
            conn.close()
    finally:
        proxy.stop()
