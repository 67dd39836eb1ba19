"""The address a node's requests come from becomes its reflexive endpoint; pair health over the API."""
import pytest
from falcon import testing

from control import config
from control.api.app import create_app
from control.live.runtime import Runtime
from tests.control.support import Control, FakeClock, bearer

pytestmark = pytest.mark.anyio


async def peer_view(control, node: dict, other: dict) -> dict:
    full = await control.netmap(node)
    return next(peer for peer in full.json["peers"] if peer["node_id"] == other["node_id"])


async def test_a_registration_records_where_it_came_from_with_the_listen_port(control):
    token = await control.join_token(reusable=True)
    a = await control.node(token, "a", remote_addr="198.51.100.7", listen_port=51999, endpoint="192.168.1.2:51999")
    b = await control.node(token, "b")  # from loopback: nothing a peer could use
    view = await peer_view(control, b, a)
    assert (view["endpoint"], view["reflexive_endpoint"]) == ("192.168.1.2:51999", "198.51.100.7:51999")
    assert (await peer_view(control, a, b))["reflexive_endpoint"] is None


async def test_a_heartbeat_from_a_new_address_is_one_revision_and_reaches_the_peers(control):
    token = await control.join_token(reusable=True)
    a = await control.node(token, "a", remote_addr="198.51.100.7")
    b = await control.node(token, "b")
    revision = (await control.netmap(b)).json["revision"]
    assert (await control.heartbeat(a, remote_addr="198.51.100.7")).status_code == 200
    await control.runtime.heartbeats.flush()
    assert (await control.netmap(b, since=revision)).status_code == 304  # same address: no change
    assert (await control.heartbeat(a, remote_addr="203.0.113.5")).status_code == 200
    await control.runtime.heartbeats.flush()
    await control.runtime.feed.refresh()
    assert (await control.netmap(b, since=revision)).status_code == 304  # once is no move yet
    control.clock.now += 2  # the next heartbeat, from the same new address: it has held
    assert (await control.heartbeat(a, remote_addr="203.0.113.5")).status_code == 200
    await control.runtime.heartbeats.flush()
    await control.runtime.feed.refresh()
    delta = (await control.netmap(b, since=revision)).json
    assert delta["revision"] == revision + 1
    assert [peer["reflexive_endpoint"] for peer in delta["upserted"]] == ["203.0.113.5:51820"]


async def test_heartbeats_alternating_between_addresses_make_no_revision(control):
    token = await control.join_token(reusable=True)
    a = await control.node(token, "a", remote_addr="198.51.100.7")
    b = await control.node(token, "b")
    revision = (await control.netmap(b)).json["revision"]
    for beat in range(40):  # a node (or someone with its token) flipping its source address
        control.clock.now += 2
        await control.heartbeat(a, remote_addr=("203.0.113.5", "203.0.113.6")[beat % 2])
        await control.runtime.heartbeats.flush()
    await control.runtime.feed.refresh()
    assert (await control.netmap(b, since=revision)).status_code == 304


async def test_a_forwarded_for_header_is_ignored_unless_its_sender_is_a_trusted_proxy(control):
    token = await control.join_token()
    a = await control.node(token, "a", remote_addr="198.51.100.7")
    await control.heartbeat(a, remote_addr="198.51.100.7", headers={"X-Forwarded-For": "203.0.113.5"})
    await control.runtime.heartbeats.flush()
    shown = await control.client.simulate_get(f"/v1/nodes/{a['node_id']}", headers=control.admin)
    assert shown.json["reflexive_endpoint"] == "198.51.100.7:51820"


@pytest.fixture
async def proxied(tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path / "state", cidr="100.64.0.0/24", trusted_proxies="10.9.0.0/16")
    runtime = Runtime(cfg, clock=FakeClock(), sweeper=False)
    async with testing.ASGIConductor(create_app(cfg, runtime)) as client:
        yield Control(client, runtime, runtime.clock)


async def test_behind_a_trusted_proxy_the_forwarded_address_is_the_node_s(proxied):
    token = await proxied.join_token()
    a = await proxied.node(token, "a", remote_addr="10.9.0.1")
    for _ in range(2):  # a new address counts once it has held
        await proxied.heartbeat(a, remote_addr="10.9.0.1", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.5"})
        await proxied.runtime.heartbeats.flush()
        proxied.clock.now += 2
    shown = await proxied.client.simulate_get(f"/v1/nodes/{a['node_id']}", headers=proxied.admin)
    assert shown.json["reflexive_endpoint"] == "203.0.113.5:51820"


def test_a_trusted_proxy_that_is_no_address_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="trusted_proxies"):
        config.load(env={}, state_dir=tmp_path, trusted_proxies="proxy.example")


async def test_mesh_health_lists_a_pair_reported_down_and_forgets_it_when_reported_up(control):
    token = await control.join_token(reusable=True)
    a, b, c = [await control.node(token, name) for name in "abc"]
    empty = await control.client.simulate_get("/v1/mesh/health", headers=control.admin)
    assert empty.status_code == 200 and empty.json["pairs"] == [] and empty.json["bound"] == 60.0
    down = [{"node_id": b["node_id"], "down_for": 70.5, "reason": "no_traffic"}]
    await control.heartbeat(a, tunnels_down=down)
    await control.heartbeat(a)  # a later heartbeat without a report keeps the report
    await control.runtime.heartbeats.flush()
    [pair] = (await control.client.simulate_get("/v1/mesh/health", headers=control.admin)).json["pairs"]
    assert pair["nodes"] == sorted([a["node_id"], b["node_id"]]) and pair["reported_by"] == [a["node_id"]]
    assert pair["reason"] == "nothing received" and pair["since"] == control.clock.now - 70.5
    await control.heartbeat(a, tunnels_down=[])
    await control.runtime.heartbeats.flush()
    assert (await control.client.simulate_get("/v1/mesh/health", headers=control.admin)).json["pairs"] == []
    assert (await control.client.simulate_get("/v1/mesh/health", headers=bearer(c))).status_code == 401


async def test_a_heartbeat_s_bad_tunnel_report_is_refused_and_stores_nothing(control):
    token = await control.join_token(reusable=True)
    a, b = await control.node(token, "a"), await control.node(token, "b")
    for bad in ([{"node_id": b["node_id"], "down_for": -1, "reason": "no_traffic"}],
                [{"node_id": b["node_id"], "down_for": 1, "reason": "gremlins"}],
                [{"node_id": "x\n", "down_for": 1, "reason": "no_traffic"}],
                [{"node_id": b["node_id"], "down_for": 1e308, "reason": "no_traffic"}]):
        assert (await control.heartbeat(a, tunnels_down=bad)).status_code == 400
    await control.runtime.heartbeats.flush()
    assert (await control.client.simulate_get("/v1/mesh/health", headers=control.admin)).json["pairs"] == []
