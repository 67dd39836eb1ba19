"""Liveness through the API with an injectable clock: offline, back online, grace after a pause."""
import pytest

pytestmark = pytest.mark.anyio


async def peer_state(control, viewer, node) -> bool:
    peers = (await control.netmap(viewer)).json["peers"]
    return next(p["online"] for p in peers if p["node_id"] == node["node_id"])


async def test_silent_node_goes_offline_once_and_comes_back_with_its_ip(control):
    token = await control.join_token(reusable=True)
    a, b = await control.node(token, "a"), await control.node(token, "b")
    await control.advance(5.5, beating=(a, b))
    revision = (await control.netmap(a)).json["revision"]

    await control.advance(6.0, beating=(a,))  # b silent for exactly the threshold: still online
    assert await peer_state(control, a, b) is True
    await control.advance(1.0, beating=(a,))
    assert await peer_state(control, a, b) is False
    after = (await control.netmap(a)).json["revision"]
    assert after == revision + 1  # declared offline exactly once
    await control.advance(3.0, beating=(a,))
    assert (await control.netmap(a)).json["revision"] == after  # sweeps of an offline node change nothing

    assert (await control.heartbeat(b)).status_code == 200
    await control.runtime.heartbeats.flush()
    await control.runtime.feed.refresh()
    answer = (await control.netmap(a, since=after)).json
    assert answer["revision"] == after + 1
    assert answer["upserted"][0]["online"] is True and answer["upserted"][0]["mesh_ip"] == b["mesh_ip"]


async def test_heartbeats_that_change_nothing_do_not_bump_the_revision(control):
    token = await control.join_token()
    a = await control.node(token, "a")
    await control.advance(20, beating=(a,))
    assert (await control.netmap(a)).json["revision"] == a["revision"]


async def test_control_plane_pause_grants_grace_instead_of_tearing_the_mesh_down(control):
    token = await control.join_token(reusable=True)
    nodes = [await control.node(token, f"n{i}") for i in range(3)]
    await control.advance(2.0, beating=nodes)
    revision = (await control.netmap(nodes[0])).json["revision"]

    control.clock.now += 30  # the control plane was down for 30 s: nobody swept, nobody heartbeated
    await control.advance(5.0, beating=nodes[:2])  # two nodes heartbeat again within the grace
    assert (await control.netmap(nodes[0])).json["revision"] == revision
    assert all([await peer_state(control, nodes[0], n) for n in nodes[1:]])

    await control.advance(1.5, beating=nodes[:2])  # grace over: the silent one goes, alone
    assert await peer_state(control, nodes[0], nodes[2]) is False
    assert await peer_state(control, nodes[0], nodes[1]) is True
    assert (await control.netmap(nodes[0])).json["revision"] == revision + 1
