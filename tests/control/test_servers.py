"""Real gunicorn processes: concurrency, several instances on one PostgreSQL, restarts."""
import asyncio
import contextlib
import json
import threading
import time

import httpx
import pytest
from httpx_sse import EventSource

from testbed import enrol
from testbed.control_process import ControlProcess

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def pg_url(pg_database):
    return pg_database


@pytest.fixture
def processes():
    started = []
    yield started
    for proc in started:
        proc.stop()


def spawn(processes, *args, **kwargs) -> ControlProcess:
    proc = ControlProcess(*args, **kwargs).start()
    processes.append(proc)
    return proc


async def register_many(urls: list[str], token: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*[enrol.register(client, urls[i % len(urls)], token, f"n{i}")
                                      for i in range(count)])


def mesh_ips(answers) -> set[str]:
    assert [a.status_code for a in answers if a.status_code != 200] == []
    return {a.json()["mesh_ip"] for a in answers}


def test_a_challenge_from_one_instance_is_redeemed_at_another_once(processes, pg_url, tmp_path):
    a, b = spawn(processes, tmp_path / "a", pg_url), spawn(processes, tmp_path / "b", pg_url)
    token = a.join_token(reusable=True)
    challenge = httpx.get(a.url + "/v1/challenge", headers=enrol.auth(token)).json()
    again = httpx.get(b.url + "/v1/challenge", headers=enrol.auth(token)).json()
    assert challenge["control_key"] == again["control_key"]  # one control key for the shared store
    body = enrol.proven(challenge, {"public_key": enrol.new_key(), "name": "x"})
    assert httpx.post(b.url + "/v1/register", json=body, headers=enrol.auth(token)).status_code == 200
    replay = enrol.proven(challenge, {"public_key": enrol.new_key(), "name": "y"})
    assert httpx.post(a.url + "/v1/register", json=replay, headers=enrol.auth(token)).status_code == 403


async def test_200_concurrent_registrations_on_4_workers_on_postgres(processes, pg_url, tmp_path):
    # Silent nodes must not go offline (a revision bump each) while a loaded machine registers them.
    control = spawn(processes, tmp_path / "a", pg_url, workers=4, heartbeat_interval=30, offline_after=120)
    started = time.monotonic()
    answers = await register_many([control.url], control.join_token(), 200)
    print(f"200 proven registrations in {time.monotonic() - started:.1f} s")
    assert len(mesh_ips(answers)) == 200
    listed = httpx.get(control.url + "/v1/nodes", headers=control.admin).json()
    assert listed["revision"] == 200 and len(listed["nodes"]) == 200


async def test_200_concurrent_registrations_on_4_workers_on_sqlite(processes, tmp_path):
    control = spawn(processes, tmp_path / "a", workers=4)
    answers = await register_many([control.url], control.join_token(), 200)
    assert len(mesh_ips(answers)) == 200


async def test_two_instances_on_one_postgres_hand_out_distinct_ips(processes, pg_url, tmp_path):
    a = spawn(processes, tmp_path / "a", pg_url, workers=2)
    b = spawn(processes, tmp_path / "b", pg_url, workers=2)
    answers = await register_many([a.url, b.url], a.join_token(), 200)
    assert len(mesh_ips(answers)) == 200


async def test_single_use_token_admits_exactly_one_of_20_parallel_registrations(processes, pg_url, tmp_path):
    a = spawn(processes, tmp_path / "a", pg_url, workers=2)
    b = spawn(processes, tmp_path / "b", pg_url, workers=2)
    answers = await register_many([a.url, b.url], a.join_token(reusable=False), 20)
    assert sorted(r.status_code for r in answers) == [200] + [401] * 19


async def test_changes_through_one_instance_reach_watchers_of_the_other_within_1s(processes, pg_url, tmp_path):
    a = spawn(processes, tmp_path / "a", pg_url, heartbeat_interval=0.5, offline_after=1.5)
    b = spawn(processes, tmp_path / "b", pg_url, heartbeat_interval=0.5, offline_after=1.5)
    token = a.join_token()
    async with httpx.AsyncClient(timeout=30) as client:
        async def register(url, name):
            answer = await enrol.register(client, url, token, name)
            return answer.json()

        watcher = await register(b.url, "watcher")
        auth = {"Authorization": f"Bearer {watcher['node_token']}"}

        async def heartbeats():
            while True:
                await client.post(f"{b.url}/v1/nodes/{watcher['node_id']}/heartbeat", json={}, headers=auth)
                await asyncio.sleep(0.3)

        beating = asyncio.create_task(heartbeats())
        revision = (await client.get(b.url + "/v1/netmap", headers=auth)).json()["revision"]
        poll = asyncio.create_task(client.get(b.url + "/v1/netmap", params={"since": revision, "wait": 10},
                                              headers=auth))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        joined = await register(a.url, "joiner")
        answer = (await poll).json()
        assert time.monotonic() - started < 1.0
        assert [p["node_id"] for p in answer["upserted"]] == [joined["node_id"]]

        # The joiner never heartbeats: it goes offline once, declared by exactly one instance.
        revision = answer["revision"]
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            answer = await client.get(b.url + "/v1/netmap", params={"since": revision, "wait": 5}, headers=auth)
            if answer.status_code == 200:
                revision = answer.json()["revision"]
                if any(not p["online"] for p in answer.json()["upserted"]):
                    break
        else:
            pytest.fail("watcher never saw the joiner go offline")
        beating.cancel()
    await asyncio.sleep(1.0)
    declared = a.events("node_offline") + b.events("node_offline")
    assert [e["node"] for e in declared] == [joined["node_id"]]


def test_control_plane_restart_keeps_heartbeating_nodes_online(processes, tmp_path):
    control = spawn(processes, tmp_path / "a", heartbeat_interval=0.5, offline_after=1.5)
    token = control.join_token()
    nodes = [enrol.register_sync(control.url, token, f"n{i}").json() for i in range(3)]
    stop = threading.Event()

    def beat(node):  # an agent: heartbeat every interval, ignore failures while the control plane is down
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"{control.url}/v1/nodes/{node['node_id']}/heartbeat", json={}, timeout=1,
                           headers={"Authorization": f"Bearer {node['node_token']}"})
            stop.wait(0.5)

    threads = [threading.Thread(target=beat, args=(n,)) for n in nodes]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        control.stop()
        time.sleep(4.0)  # down for well over the offline threshold
        control.start()
        time.sleep(4.0)
        listed = httpx.get(control.url + "/v1/nodes", headers=control.admin).json()
        assert all(n["online"] for n in listed["nodes"])
        assert control.events("node_offline") == []
        assert control.events("liveness_grace")
    finally:
        stop.set()
        for thread in threads:
            thread.join()


async def test_netmap_stream_writes_one_line_per_change(processes, tmp_path):
    control = spawn(processes, tmp_path / "a")
    token = control.join_token()
    async with httpx.AsyncClient(timeout=30) as client:
        async def register(name):
            answer = await enrol.register(client, control.url, token, name)
            return answer.json()

        a = await register("a")
        lines = []

        async def read():
            async with client.stream("GET", control.url + "/v1/netmap", params={"since": a["revision"], "stream": 1},
                                     headers={"Authorization": f"Bearer {a['node_token']}"}) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                async for event in EventSource(answer).aiter_sse():
                    assert event.event == "netmap"
                    lines.append(json.loads(event.data))
                    if len(lines) == 2:
                        return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        assert lines == []  # up to date: nothing to say yet
        b, c = await register("b"), await register("c")
        await asyncio.wait_for(reader, 5)
    seen = [p["node_id"] for line in lines for p in line["upserted"]]
    assert seen == [b["node_id"], c["node_id"]] and lines[-1]["revision"] == c["revision"]
