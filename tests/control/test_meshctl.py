"""meshctl against a real control-plane process, and (in-process) against a fake API answering hostile data.

Argument parsing and the safe-printing helpers are tested without any server in test_cli.py and
test_console.py."""
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from control.cli import meshctl as cli
from testbed import enrol
from testbed.certs import certificate
from testbed.control_process import MESHCTL, ControlProcess

slow = pytest.mark.slow


@pytest.fixture
def control(tmp_path):
    proc = ControlProcess(tmp_path / "state").start()
    yield proc
    proc.stop()


def meshctl(control, *args, check=True):
    env = {"MESHCTL_CONTROL": control.url, "MESHCTL_ADMIN_TOKEN_FILE": str(control.state_dir / "admin.token"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([MESHCTL, *args], capture_output=True, text=True, env=env, check=check, timeout=60)


@slow
def test_token_create_prints_the_token_alone_and_it_enrolls_a_node(control):
    out = meshctl(control, "token", "create", "--ttl", "15m").stdout
    token = out.strip()
    assert out.count("\n") == 1 and token.startswith("mvj_")
    node = enrol.register_sync(control.url, token, "alpha").json()
    table = meshctl(control, "nodes").stdout
    assert "alpha" in table and node["mesh_ip"] in table and "online" in table
    listed = json.loads(meshctl(control, "nodes", "--json").stdout)
    assert [n["node_id"] for n in listed["nodes"]] == [node["node_id"]]
    assert "used" in meshctl(control, "token", "list").stdout

    meshctl(control, "node", "rm", node["node_id"])
    assert json.loads(meshctl(control, "nodes", "--json").stdout)["nodes"] == []
    missing = meshctl(control, "node", "rm", node["node_id"], check=False)
    assert missing.returncode != 0 and "404" in missing.stderr


def test_node_rename_and_names_used_twice_are_flagged(control):
    token = control.join_token()
    first = enrol.register_sync(control.url, token, "alpha").json()
    enrol.register_sync(control.url, token, "alpha")
    table = meshctl(control, "nodes").stdout
    assert table.count("alpha *") == 2 and "names used by more than one node (marked *): alpha" in table
    out = meshctl(control, "node", "rename", first["node_id"], "gateway").stdout
    assert f"renamed {first['node_id']} to gateway at revision 3" in out
    table = meshctl(control, "nodes").stdout
    assert "gateway" in table and "*" not in table and "more than one" not in table
    bad = meshctl(control, "node", "rename", first["node_id"], "no spaces", check=False)
    assert bad.returncode != 0 and "400" in bad.stderr
    assert control.events("node_renamed")[0]["node_name"] == "gateway"


@slow
def test_watch_streams_joins_and_removals(control):
    env = {"MESHCTL_CONTROL": control.url, "MESHCTL_ADMIN_TOKEN_FILE": str(control.state_dir / "admin.token")}
    watch = subprocess.Popen([MESHCTL, "watch", "--duration", "4"], stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    token = control.join_token()
    node = enrol.register_sync(control.url, token, "beta").json()
    httpx.delete(f"{control.url}/v1/nodes/{node['node_id']}", headers=control.admin)
    out, _ = watch.communicate(timeout=30)
    assert "joined   beta" in out and "removed  beta" in out


@slow
def test_serve_speaks_tls_with_the_given_certificate(tmp_path):
    cert, key = certificate(tmp_path)
    proc = ControlProcess(tmp_path / "state", tls=(cert, key)).start()
    try:
        assert httpx.get(proc.url + "/healthz", timeout=5, verify=proc.verify).json()["status"] == "ok"
        with pytest.raises(httpx.ConnectError):
            httpx.get(proc.url + "/healthz", timeout=5)  # not trusted without the CA
        out = subprocess.run([MESHCTL, "nodes", "--control", proc.url, "--admin-token-file",
                              str(proc.state_dir / "admin.token"), "--ca", str(cert)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "revision 0" in out.stdout
        out = subprocess.run([MESHCTL, "nodes", "--control", proc.url, "--admin-token-file",
                              str(proc.state_dir / "admin.token")], env={**os.environ, "MESHCTL_CA": str(cert)},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "revision 0" in out.stdout
    finally:
        proc.stop()


# -- hostile data from the API: printed literally, never as markup or terminal controls ------------

MARKUP, ESCAPE = "[bold red]x[/]", "\x1b[31m"


def hostile_node(node_id: str, **extra) -> dict:
    return {"node_id": node_id, "name": f"{MARKUP}{ESCAPE}\nevil", "mesh_ip": "100.64.0.9",
            "public_key": enrol.new_key(), "endpoint": f"{ESCAPE}10.0.0.1:51820\x9b2J", "online": True,
            "last_seen": time.time(), "applied_revision": None, "listen_port": 51820, **extra}


class FakeApi(BaseHTTPRequestHandler):
    """Answers as an older or compromised control plane might: node-controlled text, unfiltered."""

    answers: ClassVar[dict] = {}  # path -> (status, body), set per test by `fake_api`

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/v1/nodes" and "since" in parse_qs(url.query):
            if self.server.watched:
                time.sleep(0.2)
                return self.reply(304, None)
            self.server.watched = True
            return self.reply(200, self.answers["/v1/nodes?since"])
        self.reply(*self.answers[url.path])

    def do_DELETE(self):
        self.reply(*self.answers[urlsplit(self.path).path])

    def reply(self, status: int, body):
        self.send_response(status)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api(tmp_path):
    def serve(answers: dict) -> list[str]:
        handler = type("Answers", (FakeApi,), {"answers": answers})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.watched = False
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        token = tmp_path / "admin.token"
        token.write_text("mva_test\n")
        token.chmod(0o600)
        return ["--control", f"http://127.0.0.1:{server.server_address[1]}", "--admin-token-file", str(token)]

    servers = []
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def run(monkeypatch, capsys):
    """meshctl in this process, in the bare environment a shell script might give it:
    (exit code, stdout, stderr). A command that fails exits with its message as the code
    (SystemExit: Python prints it on stderr)."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")

    def meshctl(*args: str) -> tuple[int | str | None, str, str]:
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err
    return meshctl


def assert_inert(output: str) -> None:
    assert not any(ch in output for ch in (ESCAPE[0], "\x9b", "\x7f")), repr(output)
    assert MARKUP in output and "\\x1b[31m" in output and "\\x0aevil" in output, output


def test_nodes_table_prints_node_controlled_text_literally(fake_api, run):
    nodes = [hostile_node("n1"), hostile_node("n2", name=":thumbs_up:")]
    args = fake_api({"/v1/nodes": (200, {"revision": f"7{ESCAPE}", "nodes": nodes})})
    code, out, err = run("nodes", *args)
    assert code == 0, err
    assert_inert(out)
    assert "\\x9b2J" in out and ":thumbs_up:" in out
    assert "revision 7\\x1b[31m, 2 nodes" in out


def test_watch_prints_node_controlled_text_literally(fake_api, run):
    args = fake_api({"/v1/nodes": (200, {"revision": 1, "nodes": []}),
                     "/v1/nodes?since": {"revision": 2, "nodes": [hostile_node("n1")]}})
    code, out, err = run("watch", "--duration", "1", *args)
    assert code == 0, err
    joined = [line for line in out.splitlines() if " joined " in line]
    assert len(joined) == 1 and joined[0].endswith(f"joined   {MARKUP}\\x1b[31m\\x0aevil 100.64.0.9 (n1)")
    assert_inert(out)


def test_token_list_node_rm_and_errors_print_api_text_literally(fake_api, run):
    token = {"id": f"t{MARKUP}", "state": ESCAPE, "reusable": False, "uses": 0, "expires_at": None,
             "description": f"{MARKUP}{ESCAPE}\nevil"}
    args = fake_api({"/v1/join-tokens": (200, {"join_tokens": [token]}),
                     "/v1/nodes/n1": (200, {"deleted": f"n1{MARKUP}{ESCAPE}\nevil", "revision": 3}),
                     "/v1/nodes/n2": (404, {"message": f"no node {MARKUP}{ESCAPE}\nevil"})})
    code, out, err = run("token", "list", *args)
    assert code == 0, err
    assert_inert(out)
    code, out, err = run("node", "rm", "n1", *args)
    assert code == 0, err
    assert_inert(out)
    assert out.count("\n") == 1
    code, _, _ = run("node", "rm", "n2", *args)
    assert isinstance(code, str) and "404" in code
    assert_inert(code)


@slow
def test_health_says_every_tunnel_works_then_names_a_pair_a_node_reports_down(control):
    token = meshctl(control, "token", "create", "--reusable").stdout.strip()
    a = enrol.register_sync(control.url, token, "alpha").json()
    b = enrol.register_sync(control.url, token, "beta").json()
    healthy = meshctl(control, "health")
    assert healthy.returncode == 0 and "every tunnel works" in healthy.stdout
    assert json.loads(meshctl(control, "health", "--json").stdout) == {"pairs": []}
    down = {"tunnels_down": [{"node_id": b["node_id"], "down_for": 75, "reason": "no_handshake"}]}
    answer = httpx.post(f"{control.url}/v1/nodes/{a['node_id']}/heartbeat", json=down,
                        headers={"Authorization": f"Bearer {a['node_token']}"})
    assert answer.status_code == 200
    deadline = time.monotonic() + 10  # the heartbeat is stored at the next flush (0.25 s)
    while (listed := meshctl(control, "health", check=False)).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listed.returncode == 1 and "alpha" in listed.stdout and "beta" in listed.stdout
    assert "no handshake" in listed.stdout
    [pair] = json.loads(meshctl(control, "health", "--json", check=False).stdout)["pairs"]
    assert sorted(pair["nodes"]) == sorted([a["node_id"], b["node_id"]]) and pair["reported_by"] == [a["node_id"]]


def test_diagram_draws_the_running_mesh_as_dot_and_svg(control, tmp_path):
    token = control.join_token()
    enrol.register_sync(control.url, token, "alpha")
    enrol.register_sync(control.url, token, "beta")
    dot = meshctl(control, "diagram").stdout
    assert dot.startswith("// meshvpn as built") and '"alpha\\n100.64.0.' in dot and control.url in dot
    assert "2 of 2 nodes online, 1 tunnels up, 0 down" in dot
    if shutil.which("dot"):
        out = meshctl(control, "diagram", "-o", str(tmp_path / "asbuilt"))
        assert out.returncode == 0 and "<svg" in (tmp_path / "asbuilt.svg").read_text()
        assert (tmp_path / "asbuilt.dot").read_text() == dot


def test_an_admin_token_file_others_can_read_is_refused(control, tmp_path):
    loose = tmp_path / "admin.token"
    loose.write_text((control.state_dir / "admin.token").read_text())
    loose.chmod(0o644)
    env = {"MESHCTL_CONTROL": control.url, "MESHCTL_ADMIN_TOKEN_FILE": str(loose), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([MESHCTL, "nodes"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0 and "refusing to use" in done.stderr and "chmod 600" in done.stderr
