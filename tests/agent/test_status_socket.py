"""The agent's secrets at rest: its status socket (served in-process) is 0600, its state directory 0700."""
import asyncio
import os
import stat

import httpx
import msgspec
import pytest

from agent import status
from agent.state import StateDir
from meshcommon import agent_api
from meshcommon.wire import AgentStatus

pytestmark = pytest.mark.anyio


STATUS = AgentStatus(node_id="n1", name="alpha", mesh_ip="100.64.0.1", public_key=None, interface="mesh0",
                     backend=None, revision=None, applied_revision=None, control="unreachable", control_url=None,
                     unreachable_since=None, last_error=None, peers=[], rejected=[])


class FakeAgent:
    def status(self) -> dict:
        return msgspec.to_builtins(STATUS)


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


async def test_a_stale_socket_file_is_replaced_by_a_private_one(tmp_path):
    socket_path = tmp_path / "agent.sock"
    socket_path.write_text("left over")
    socket_path.chmod(0o666)
    task = await serving(str(socket_path))
    try:
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    finally:
        await stop(task)


def test_state_writes_keep_the_state_directory_0700_and_files_0600(tmp_path):
    fresh, loose = StateDir(tmp_path / "fresh"), StateDir(tmp_path / "loose")
    loose.root.mkdir(mode=0o755)
    loose.root.chmod(0o755)
    for state in (fresh, loose):
        state.save_node({"node_id": "n1", "node_token": "mvn_secret"})
        assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
        assert stat.S_IMODE(state.node_path.stat().st_mode) == 0o600
