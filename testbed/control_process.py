"""Real control-plane processes (`meshctl serve`: gunicorn + uvicorn workers) for tests."""
from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from testbed.pg import free_port

MESHCTL = str(Path(sys.executable).with_name("meshctl"))


class ControlProcess:
    def __init__(self, state_dir: Path, db_url: str | None = None, workers: int = 1, port: int | None = None,
                 heartbeat_interval: float = 2.0, offline_after: float = 6.0, cidr: str = "100.64.0.0/16",
                 tls: tuple[Path, Path] | None = None, settings: dict | None = None):
        """`settings`: any other Config fields, passed as MESHVPN_CONTROL_* environment variables."""
        self.state_dir = state_dir
        self.port = port or free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.verify = ssl.create_default_context(cafile=str(tls[0])) if tls else True
        self.verify_file = tls[0] if tls else None
        self.args = [MESHCTL, "serve", "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(state_dir),
                     "--workers", str(workers), "--cidr", cidr, "--heartbeat-interval", str(heartbeat_interval),
                     "--offline-after", str(offline_after)]
        if db_url:
            self.args += ["--db", db_url]
        if tls:
            self.args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        self.env = {**os.environ, **{f"MESHVPN_CONTROL_{k.upper()}": str(v) for k, v in (settings or {}).items()}}
        self.log_path = state_dir / f"control-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> ControlProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"control plane exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1, verify=self.verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"control plane did not come up: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_group(self.proc, timeout=15)
        self.proc = None

    @property
    def admin_token(self) -> str:
        return (self.state_dir / "admin.token").read_text().strip()

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def join_token(self, reusable: bool = True) -> str:
        answer = httpx.post(self.url + "/v1/join-tokens", json={"reusable": reusable}, headers=self.admin,
                            verify=self.verify)
        answer.raise_for_status()
        return answer.json()["token"]

    def events(self, name: str) -> list[dict]:
        found = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == name:
                    found.append(record)
        return found


def stop_group(proc: subprocess.Popen | None, timeout: float) -> None:
    """Stop a server started in a session of its own: SIGTERM to its group, SIGKILL after `timeout` s."""
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
