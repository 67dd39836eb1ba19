"""A throwaway PostgreSQL server for tests: the real thing, started from the machine's binaries.

Uses MESHVPN_TEST_PG_URL when set (a server the caller runs); otherwise
initdb + pg_ctl into a temporary directory, run as the `postgres` user when
we are root, listening on 127.0.0.1 only, and stopped at the end.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager

import psycopg2


def find_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A PostgreSQL server of our own in a temporary directory (initdb, then pg_ctl)."""

    def __init__(self, bindir: str):
        self.bindir, self.root = bindir, tempfile.mkdtemp(prefix="meshvpn-pg-")
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")
        self.data, self.port = os.path.join(self.root, "data"), free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run([*self.as_user, f"{bindir}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                        "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)

    def pg_ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.as_user, f"{self.bindir}/pg_ctl", "-D", self.data, *args], check=check,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=300"
        self.pg_ctl("-o", options, "-l", f"{self.root}/log", "-w", "start")

    def stop(self) -> None:
        """Stop at once (`immediate`: as a crash would), dropping every connection."""
        self.pg_ctl("-m", "immediate", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def server():
    """Yield an admin URL of a running server, or None when PostgreSQL is not installed."""
    if os.environ.get("MESHVPN_TEST_PG_URL"):
        yield os.environ["MESHVPN_TEST_PG_URL"]
        return
    bindir = find_bin()
    if bindir is None:
        yield None
        return
    own = Server(bindir)
    own.start()
    try:
        yield own.url
    finally:
        own.remove()


def fresh_database(admin_url: str) -> str:
    """Create an empty database and return its URL."""
    name = "meshvpn_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name
