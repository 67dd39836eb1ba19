"""HAProxy terminating TLS in front of a control plane, for benchmarks (`control_scale.py --tls-proxy`).

Renders the meshvpn_control role's HAProxy configuration (the one a deployment with
`meshvpn_control_tls_proxy` runs) into a directory, starts `haproxy -db` (foreground, no logging) on a
free loopback port, and waits until it accepts connections. The control plane behind it listens on
plain HTTP and trusts it for X-Forwarded-For (`trusted_proxies`).

HAProxy runs with jemalloc preloaded where it is installed, as the role runs it (`JEMALLOC`):
glibc's allocator keeps for good what a burst of handshakes took.

HAProxy wants two descriptors per connection it may hold (`maxconn`): where a process may not hold
that many (a container's hard RLIMIT_NOFILE), `proxies` starts several instances on one port, the
kernel spreading connections between them (HAProxy binds with SO_REUSEPORT).
"""
from __future__ import annotations

import glob
import math
import os
import resource
import shutil
import socket
import subprocess
import time
from pathlib import Path

import jinja2
import psutil

from testbed.control_process import stop_group
from testbed.pg import free_port

TEMPLATE = Path(__file__).resolve().parents[1] / "roles/meshvpn_control/templates/haproxy.cfg.j2"
FD_MARGIN = 512  # descriptors of an instance besides its connections (listeners, pollers, logs)
ADDRESS = "127.0.0.1"  # the proxy's source address towards the control plane: its `trusted_proxies`
# Debian's libjemalloc2, as roles/meshvpn_control/tasks/tls_proxy.yml preloads it (None: not installed).
JEMALLOC = next(iter(sorted(glob.glob("/usr/lib/*/libjemalloc.so.2"))), None)


def available() -> bool:
    return shutil.which("haproxy") is not None


def version() -> str:
    """HAProxy's version line (`haproxy -v`), for a benchmark's record."""
    return subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


class HAProxy:
    def __init__(self, directory: Path, cert: Path, key: Path, backend_port: int, maxconn: int,
                 keepalive_timeout: float = 75.0, threads: int | None = None, port: int | None = None,
                 name: str = "haproxy", per_address: int | None = None):
        """`per_address`: connections one client address may hold (default: maxconn, as every
        simulated node of a benchmark connects from loopback)."""
        self.port = port or free_port()
        self.pem = directory / "proxy.pem"
        self.pem.write_text(cert.read_text() + key.read_text())
        self.pem.chmod(0o600)
        self.config = directory / f"{name}.cfg"
        # As Ansible renders it for the role (trim_blocks), with the role's variables.
        template = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                      keep_trailing_newline=True).from_string(TEMPLATE.read_text())
        self.config.write_text(template.render(
            meshvpn_control_tls_proxy_maxconn=maxconn, meshvpn_control__proxy_threads=threads or os.cpu_count() or 1,
            meshvpn_control__proxy_timeout=int(keepalive_timeout), meshvpn_control_listen=f"{ADDRESS}:{self.port}",
            meshvpn_control__proxy_cert=self.pem, meshvpn_control_backend_port=backend_port,
            meshvpn_control_tls_proxy_per_address=per_address or maxconn))
        self.log_path = directory / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0, allocator: str | None = JEMALLOC) -> HAProxy:
        """`allocator`: a malloc library to preload (None: glibc's)."""
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.config)], check=True)
        env = {**os.environ, "LD_PRELOAD": allocator} if allocator else None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection((ADDRESS, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"haproxy did not listen on {self.port}")

    def stop(self) -> None:
        stop_group(self.proc, timeout=10)
        self.proc = None


def proxies(directory: Path, cert: Path, key: Path, backend_port: int, connections: int) -> list[HAProxy]:
    """Enough HAProxy instances on one port to hold `connections` client connections within this
    process's descriptor limit (each instance: two per connection, and a margin), started."""
    fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    per_instance = (fds - FD_MARGIN) // 2
    count = max(1, math.ceil(connections / per_instance))
    threads = max(1, (os.cpu_count() or 1) // count)
    port = free_port()
    started: list[HAProxy] = []
    try:
        for i in range(count):
            started.append(HAProxy(directory, cert, key, backend_port, per_instance, threads=threads, port=port,
                                   name=f"haproxy-{i}").start())
    except BaseException:
        for proxy in started:
            proxy.stop()
        raise
    return started


def processes(started: list[HAProxy]) -> list[psutil.Process]:
    return [psutil.Process(proxy.proc.pid) for proxy in started if proxy.proc]
