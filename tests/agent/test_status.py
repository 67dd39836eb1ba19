"""The status endpoint: its socket is 0600 in a 0700 directory; without an agent, the files speak."""
import asyncio
import os
import stat

import httpx
import msgspec
import pytest

from agent import intake, status
from agent.state import StateDir
from meshcommon import agent_api
from meshcommon.wire import AgentStatus
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
