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
    root = tempfile.mkdtemp(prefix="meshvpn-pg-")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
    data, port = os.path.join(root, "data"), free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, stdout=subprocess.DEVNULL)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=300"
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start"],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """Create an empty database and return its URL."""
    name = "meshvpn_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name
