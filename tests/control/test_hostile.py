"""Hostile nodes: one node's bad data never costs another node anything; keys need their private key."""
import logging

import pytest

from control.registry.challenges import MAX_OUTSTANDING
from control.rules.records import HeartbeatReport
from control.store.models import JoinToken, Node
from testbed.enrol import PRIVATE, new_key, proven
from tests.control.support import bearer

pytestmark = pytest.mark.anyio


async def test_a_heartbeat_the_store_cannot_hold_is_refused_and_nobody_goes_offline(control):
    token = await control.join_token(reusable=True)
    evil, good = await control.node(token, "evil"), await control.node(token, "good")
    refused = await control.heartbeat(evil, applied_revision=9223372036854775808)
    assert refused.status_code == 400 and "applied_revision" in refused.json["message"]
    await control.advance(20, beating=(evil, good))
    listed = await control.client.simulate_get("/v1/nodes", headers=control.admin)
    assert {n["name"]: n["online"] for n in listed.json["nodes"]} == {"evil": True, "good": True}


async def test_a_record_the_store_refuses_is_dropped_for_that_node_alone_and_never_requeued(control):
    token = await control.join_token(reusable=True)
    evil, good = await control.node(token, "evil"), await control.node(token, "good")
    # Past the edge (as a future bug might let it): a value no BIGINT holds, in the same batch.
    control.runtime.heartbeats.add(evil["node_id"], HeartbeatReport(control.clock(), 2**70), urgent=False)
    await control.heartbeat(good, applied_revision=1)
    control.clock.now += 1
    await control.runtime.heartbeats.flush()
    assert control.runtime.heartbeats.pending == {}  # nothing re-queued to poison the next flush
    assert Node.get_by_id(good["node_id"]).applied_revision == 1
    assert Node.get_by_id(good["node_id"]).last_seen == control.clock.now - 1
    await control.advance(20, beating=(good, evil))  # later flushes, with the evil node beating validly
    listed = await control.client.simulate_get("/v1/nodes", headers=control.admin)
    assert all(n["online"] for n in listed.json["nodes"])


async def test_enrolment_without_proof_is_refused_and_consumes_nothing(control):
    token = await control.join_token()  # single-use
    bare = await control.register(token, "bare", prove=False)
    assert bare.status_code == 403 and "challenge" in bare.json["message"]
    assert JoinToken.get().uses == 0
    assert (await control.register(token, "proven")).status_code == 200


async def test_nobody_can_enrol_a_key_without_its_private_key(control):
    token = await control.join_token(reusable=True)
    victim_key = new_key()
    challenge = (await control.challenge(token)).json
    other = new_key()  # the attacker's own key pair proves nothing about the victim's key
    forged = {**proven(challenge, {"public_key": other, "name": "squat"}), "public_key": victim_key}
    result = await control.client.simulate_post("/v1/register", json=forged,
                                                headers={"Authorization": f"Bearer {token}"})
    assert result.status_code == 403 and result.json["error"] == "proof_rejected"
    assert Node.select().count() == 0
    assert (await control.register(token, "victim", key=victim_key)).status_code == 200


async def test_a_nonce_is_single_use_bound_to_its_token_and_expires(control):
    first, second = await control.join_token(reusable=True), await control.join_token(reusable=True)
    auth = {"Authorization": f"Bearer {first}"}

    async def post(body, headers=auth):
        return await control.client.simulate_post("/v1/register", json=body, headers=headers)

    challenge = (await control.challenge(first)).json
    body = proven(challenge, {"public_key": new_key(), "name": "a"})
    assert (await post(body)).status_code == 200
    reused = proven(challenge, {"public_key": new_key(), "name": "b"})
    assert (await post(reused)).status_code == 403  # the nonce is gone

    elsewhere = proven((await control.challenge(first)).json, {"public_key": new_key(), "name": "c"})
    assert (await post(elsewhere, {"Authorization": f"Bearer {second}"})).status_code == 403

    late = proven((await control.challenge(first)).json, {"public_key": new_key(), "name": "d"})
    control.clock.now += 61
    assert (await post(late)).status_code == 403


async def test_a_key_change_with_the_node_token_needs_a_proof_of_the_new_key(control):
    node = await control.node(await control.join_token(), "a")
    new = new_key()
    bare = await control.register(node["node_token"], "a", key=new, prove=False)
    assert bare.status_code == 403
    same = await control.register(node["node_token"], "a", key=Node.get_by_id(node["node_id"]).public_key,
                                  prove=False)
    assert same.status_code == 200  # no key change: the node token is enough
    moved = await control.register(node["node_token"], "a", key=new)
    assert moved.status_code == 200 and Node.get_by_id(node["node_id"]).public_key == new


@pytest.mark.parametrize("header", [None, "Bearer mvj_nope", "Bearer mvn_nope", "Basic x"])
async def test_a_challenge_needs_a_live_token(control, header):
    result = await control.client.simulate_get("/v1/challenge",
                                               headers={"Authorization": header} if header else {})
    assert result.status_code == 401


async def test_a_used_single_use_token_gets_no_challenge_and_challenges_are_capped(control):
    token = await control.join_token()
    await control.node(token, "a")
    assert (await control.challenge(token)).status_code == 401
    reusable = await control.join_token(reusable=True)
    registry = control.runtime.registry
    for _ in range(MAX_OUTSTANDING):
        await control.runtime.call(registry.challenge, reusable)
    capped = await control.challenge(reusable)
    assert capped.status_code == 429 and capped.json["error"] == "too_many_requests"
    assert (await control.challenge(await control.join_token())).status_code == 200  # other tokens unaffected
    control.clock.now += 61  # expired ones make room again
    assert (await control.challenge(reusable)).status_code == 200


async def test_the_control_key_is_one_and_survives_a_new_runtime(control, tmp_path):
    from control.live.runtime import Runtime
    first = (await control.challenge(await control.join_token())).json["control_key"]
    again = Runtime(control.runtime.config, clock=control.clock, sweeper=False)
    assert again.registry.challenges.public_key == first


def test_new_key_keeps_the_private_key_for_proofs():
    assert new_key() in PRIVATE


async def test_heartbeat_of_another_node_is_forbidden(control):
    token = await control.join_token(reusable=True)
    a, b = await control.node(token, "a"), await control.node(token, "b")
    result = await control.client.simulate_post(f"/v1/nodes/{b['node_id']}/heartbeat", json={},
                                                headers=bearer(a))
    assert result.status_code == 403


async def test_invented_method_names_do_not_grow_the_metrics(control):
    for i in range(30):
        answer = await control.client.simulate_request(method=f"M{i:07d}", path="/healthz")
        assert answer.status_code in (400, 405)
    metrics = (await control.client.simulate_get("/metrics")).text
    assert "M0000001" not in metrics and 'method="other"' in metrics


@pytest.mark.parametrize("header", [None, "Bearer junk", "Bearer mva_admin-is-no-enrolment-token"])
async def test_a_registration_without_a_plausible_token_is_refused_before_its_body_is_read(control, header):
    huge = b"x" * (2 << 20)  # were it read first, this would be a 413 (and a megabyte held)
    result = await control.client.simulate_post("/v1/register", body=huge,
                                                headers={"Authorization": header} if header else {})
    assert result.status_code == 401


async def test_a_registration_body_is_small(control):
    token = await control.join_token()
    result = await control.client.simulate_post("/v1/register", body=b" " * 5000,
                                                headers={"Authorization": f"Bearer {token}"})
    assert result.status_code == 413


async def test_since_values_a_delta_cannot_answer_are_not_cached_and_the_cache_is_bounded(control):
    from control.live.membership import MAX_SHARED_DELTAS
    token = await control.join_token(reusable=True)
    node = await control.node(token, "a")
    for _ in range(3):
        await control.node(token)
    cache = control.runtime.cache
    for since in range(10**9, 10**9 + 500):  # from the future: nothing to share
        cache.answer(node["node_id"], since)
    assert len(cache._deltas) == 0
    for since in range(cache.revision):
        cache.answer(node["node_id"], since)
    assert 0 < len(cache._deltas) <= MAX_SHARED_DELTAS


@pytest.mark.parametrize("depth", [600, 100_000])
async def test_deep_nesting_is_a_4xx_on_every_route_that_reads_a_body_and_logs_no_traceback(control, caplog, depth):
    token = await control.join_token(reusable=True)
    node = await control.node(token, "n")
    deep = b"[" * depth + b"1.0" + b"]" * depth
    sent = [("/v1/register", {"Authorization": "Bearer mvj_x"}, b'{"name": ' + deep + b"}"),
            ("/v1/register", {"Authorization": f"Bearer {token}"}, b'{"name": ' + deep + b"}"),
            (f"/v1/nodes/{node['node_id']}/heartbeat", bearer(node), b'{"tunnels_down": ' + deep + b"}"),
            ("/v1/join-tokens", control.admin, b'{"description": ' + deep + b"}")]
    with caplog.at_level(logging.INFO):
        for path, headers, body in sent:
            answer = await control.client.simulate_post(path, body=body,
                                                        headers={**headers, "Content-Type": "application/json"})
            assert 400 <= answer.status_code < 500, (path, answer.status_code)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("failure", ["attempt to write a readonly database", "database or disk is full"])
async def test_a_store_that_cannot_write_is_a_503_not_a_500(control, caplog, failure):
    import peewee
    token = await control.join_token(reusable=True)

    def refuse(*args, **kwargs):
        raise peewee.OperationalError(failure)

    control.runtime.registry.challenges.issue = refuse  # the store's write fails under it
    control.runtime.registry.join_tokens.create = refuse
    with caplog.at_level(logging.INFO):
        challenge = await control.client.simulate_get("/v1/challenge", headers={"Authorization": f"Bearer {token}"})
        created = await control.client.simulate_post("/v1/join-tokens", json={}, headers=control.admin)
    assert (challenge.status_code, created.status_code) == (503, 503)
    assert challenge.json["error"] == "unavailable" and failure in challenge.json["message"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
