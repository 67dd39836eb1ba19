"""The status endpoint: its socket is 0600 in a 0700 directory; without an agent, the files speak."""
import asyncio
import os
import stat

import httpx
import msgspec
import pytest

from agent import local_api as status
from agent.core import intake
from agent.statedir import StateDir
from meshcommon.contract.wire import AgentStatus
from meshcommon.plumbing import local_api_client as agent_api
from tests.agent.data import entry, full, identity

STATUS = AgentStatus(node_id="n1", name="alpha", mesh_ip="100.64.0.1", public_key=None, interface="mesh0",
                     backend=None, revision=None, applied_revision=None, control="unreachable", control_url=None,
                     unreachable_since=None, last_error=None, peers=[], rejected=[])


class FakeAgent:
    def status(self) -> AgentStatus:
        return STATUS


async def serving(socket_path: str) -> asyncio.Task:
    task = asyncio.create_task(status.serve(FakeAgent(), socket_path))
    for _ in range(200):
        try:
            if await asyncio.to_thread(agent_api.fetch_status, socket_path, 1.0) == STATUS:
                return task
        except (OSError, httpx.HTTPError):  # not listening yet
            pass
        await asyncio.sleep(0.01)
    task.cancel()
    raise AssertionError("the status server never answered")


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.anyio
@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_the_socket_is_0600_and_its_directory_0700_whatever_the_umask(tmp_path, umask):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o755)
    os.chmod(state_dir, 0o755)
    socket_path = str(state_dir / "agent.sock")
    old = os.umask(umask)
    try:
        task = await serving(socket_path)
    finally:
        os.umask(old)
    try:
        mode = os.stat(socket_path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    finally:
        await stop(task)
    assert not os.path.exists(socket_path)


@pytest.mark.anyio
async def test_a_stale_socket_file_is_replaced_by_a_private_one(tmp_path):
    socket_path = tmp_path / "agent.sock"
    socket_path.write_text("left over")
    socket_path.chmod(0o666)
    task = await serving(str(socket_path))
    try:
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    finally:
        await stop(task)


def test_without_an_agent_the_status_comes_from_the_state_directory(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(status.wg, "peer_stats", lambda interface: asked.append(interface) or ())
    state = StateDir(tmp_path)
    state.save_identity(identity())
    state.save_interface("mesh7")
    state.save_netmap(intake.cache_bytes(intake.receive(None, full(4, [entry("a", "100.64.0.2"), {"node_id": "bad"}]))))
    got = status.offline_status(tmp_path)
    assert (got.node_id, got.name, got.mesh_ip, got.interface, got.revision, got.control) == (
        "me", "alpha", "100.64.0.1", "mesh7", 4, "unknown")
    assert [p.name for p in got.peers] == ["a"] and len(got.rejected) == 1 and asked == ["mesh7"]
    assert msgspec.json.decode(msgspec.json.encode(got), type=AgentStatus) == got


def test_an_empty_or_broken_state_directory_still_has_a_status(tmp_path, monkeypatch):
    monkeypatch.setattr(status.wg, "peer_stats", lambda interface: ())
    empty = status.offline_status(tmp_path / "none")
    assert (empty.node_id, empty.name, empty.interface, empty.peers, empty.control) == (None, "", "mesh0", [],
                                                                                         "unknown")
    StateDir(tmp_path).save_netmap(b"{broken")
    assert status.offline_status(tmp_path).revision is None


@pytest.mark.parametrize("head, code", [
    (b"GET /status HTTP/1.1\r\nHost: agent\r\n\r\n", 200),
    (b"GET /status?x=1 HTTP/1.0\r\n\r\n", 200),
    (b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /other HTTP/1.1\r\n\r\n", 404),
    (b"GET /status\r\n\r\n", 400),
    (b"", 400),
])
def test_only_a_get_of_the_status_is_answered(head, code):
    assert status.route(head) == code


async def ask(socket_path: str, request: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


@pytest.mark.anyio
async def test_the_responder_answers_once_and_closes_and_refuses_what_it_does_not_serve(tmp_path, monkeypatch):
    socket_path = str(tmp_path / "agent.sock")
    task = await serving(socket_path)
    try:
        ok = await ask(socket_path, b"GET /status HTTP/1.1\r\nHost: agent\r\n\r\n")
        head, body = ok.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in head
        assert msgspec.json.decode(body, type=AgentStatus) == STATUS
        assert (await ask(socket_path, b"DELETE /status HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
        assert (await ask(socket_path, b"x" * (status.MAX_HEAD + 10))).startswith(b"HTTP/1.1 400 ")
        monkeypatch.setattr(status, "HEAD_TIMEOUT", 0.1)
        assert (await ask(socket_path, b"GET /status HTTP/1.1\r\n")).startswith(b"HTTP/1.1 400 ")  # never finished
        # Still serving after all that.
        assert await asyncio.to_thread(agent_api.fetch_status, socket_path, 2.0) == STATUS
    finally:
        await stop(task)


def test_only_a_get_of_the_metrics_is_answered_on_the_metrics_listener():
    assert status.route(b"GET /metrics HTTP/1.1\r\n\r\n", b"/metrics") == 200
    assert status.route(b"GET /status HTTP/1.1\r\n\r\n", b"/metrics") == 404
    assert status.route(b"POST /metrics HTTP/1.1\r\n\r\n", b"/metrics") == 405


@pytest.mark.anyio
async def test_the_metrics_listener_answers_prometheus_text():
    server = await status.serve_metrics(FakeAgent(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            info = 'meshvpn_agent_info{backend="",interface="mesh0",mesh_ip="100.64.0.1",node="alpha",node_id="n1"} 1.0'
            assert info in answer.text
            assert (await client.get(f"http://127.0.0.1:{port}/status", timeout=5)).status_code == 404
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_one_status_client_reads_again_and_again_and_across_an_agent_restart(tmp_path):
    socket_path = str(tmp_path / "agent.sock")
    task = await serving(socket_path)
    with agent_api.StatusClient(socket_path, timeout=2.0) as client:
        try:
            for _ in range(3):
                assert await asyncio.to_thread(client.fetch) == STATUS
        finally:
            await stop(task)
        with pytest.raises((OSError, httpx.HTTPError)):  # no agent: an error, not a stale answer
            await asyncio.to_thread(client.fetch)
        task = await serving(socket_path)
        try:
            assert await asyncio.to_thread(client.fetch) == STATUS
        finally:
            await stop(task)
