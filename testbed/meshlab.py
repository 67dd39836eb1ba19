"""Shared helpers for tests on lab hosts: agents (and their chat) on real wireguard-go."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed import lab as labs
from testbed.control_process import ControlProcess

MESHAGENT = str(Path(sys.executable).with_name("meshagent"))
MESHCHAT = str(Path(sys.executable).with_name("meshchat"))


def lab_marks():
    """Marks for a module of lab tests: slow, and skipped only where the lab cannot run and CI does not demand it."""
    marks = [pytest.mark.slow]
    reason = labs.can_run()
    if reason:
        marks.append(pytest.mark.skipif(not os.environ.get("MESHVPN_REQUIRE_LAB"), reason=reason))
    return marks


def wait_for(predicate, timeout: float, step: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Node:
    def __init__(self, host: labs.Host, state_dir: Path, controls: list[str], token_file: Path,
                 extra: tuple[str, ...] = ()):
        self.host, self.state_dir, self.controls, self.token_file = host, state_dir, controls, token_file
        self.extra = extra  # more `meshagent up` flags
        self.proc: subprocess.Popen | None = None
        self.log = state_dir.parent / f"{host.name}.log"

    def start(self) -> Node:
        args = [MESHAGENT, "up", "--name", self.host.name, "--state-dir", str(self.state_dir),
                "--join-token-file", str(self.token_file), "--listen-port", "51820"]
        for url in self.controls:
            args += ["--control", url]
        # Lab hosts share the machine's host name: each logs its own.
        self.proc = self.host.popen([*args, *self.extra], self.log, env={"MESHVPN_HOST": self.host.name})
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)

    @property
    def identity(self) -> dict:
        identity = json.loads((self.state_dir / "node.json").read_text())
        self.identity_ip = identity["mesh_ip"]  # remembered: `down --leave` removes node.json
        return identity

    def cached_revision(self) -> int | None:
        """The revision of the agent's netmap cache (None: none written yet, or unreadable)."""
        try:
            return json.loads((self.state_dir / "netmap.json").read_text())["header"]["revision"]
        except (OSError, ValueError, KeyError):
            return None

    def status(self) -> dict:
        done = self.host.run(MESHAGENT, "status", "--state-dir", str(self.state_dir), "--json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else {}

    def events(self, name: str) -> list[dict]:
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                record = json.loads(line)
                if record.get("event") == name:
                    found.append(record)
        return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(FAILED, set())
    if report.failed:
        item.stash[FAILED].add(report.when)


FAILED = pytest.StashKey[set]()
LOG_TAIL_LINES = 15


def print_log_tails(folder: Path) -> None:
    """The end of every log under `folder` (agents, chat, control planes): what a failed lab test printed
    of its own says what it waited for, these say why it did not come."""
    for log in sorted(folder.rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        print(f"--- {log.relative_to(folder)} (last {len(lines)} lines)", *lines, sep="\n")


@pytest.fixture
def lab(request, tmp_path):
    with labs.Lab() as made:
        print(f"lab {made.tag}: 10.213.{made.subnet}.0/24, gateway {made.gateway}")
        yield made
        if request.node.stash.get(FAILED, set()):
            print_log_tails(tmp_path)


def on_lab(lab: labs.Lab, state_dir: Path, db_url: str | None = None, heartbeat_interval: float = 2.0,
           offline_after: float = 6.0) -> ControlProcess:
    """A control plane (not started) listening on the root namespace's lab address."""
    proc = ControlProcess(state_dir, db_url, heartbeat_interval=heartbeat_interval, offline_after=offline_after)
    proc.args[proc.args.index("--listen") + 1] = f"{lab.gateway}:{proc.port}"
    proc.url = f"http://{lab.gateway}:{proc.port}"
    return proc


@pytest.fixture
def lab_control(lab, tmp_path):
    proc = on_lab(lab, tmp_path / "control").start()
    yield proc
    proc.stop()


def mesh(lab, control, tmp_path, count: int) -> list[Node]:
    token_file = tmp_path / "join.token"
    token_file.write_text(control.join_token() + "\n")
    nodes = [Node(lab.add_host(f"n{i}"), tmp_path / f"state-n{i}", [control.url], token_file) for i in range(count)]
    for node in nodes:
        node.start()
    return nodes


def converged(nodes: list[Node]) -> bool:
    if not all((node.state_dir / "node.json").exists() for node in nodes):
        return False
    for node in nodes:
        others = {n.identity["mesh_ip"] + "/32" for n in nodes if n is not node}
        if set(node.host.wg_peers().values()) != others or node.host.routes() != others:
            return False
    return True


def all_ping(nodes: list[Node]) -> bool:
    return all(a.host.ping(b.identity["mesh_ip"], count=1, wait=1).returncode == 0
               for a in nodes for b in nodes if a is not b)
