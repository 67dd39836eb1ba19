"""meshctl against a real control-plane process."""
import json
import subprocess
import time

import httpx
import pytest

from tests.control.conftest import new_key
from tests.control.servers import MESHCTL, ControlProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def control(tmp_path):
    proc = ControlProcess(tmp_path / "state").start()
    yield proc
    proc.stop()


def meshctl(control, *args, check=True):
    env = {"MESHCTL_CONTROL": control.url, "MESHCTL_ADMIN_TOKEN_FILE": str(control.state_dir / "admin.token"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([MESHCTL, *args], capture_output=True, text=True, env=env, check=check, timeout=60)


def test_admin_token_file_is_private(control):
    assert (control.state_dir / "admin.token").stat().st_mode & 0o777 == 0o600


def test_token_create_prints_the_token_alone_and_it_enrolls_a_node(control):
    out = meshctl(control, "token", "create", "--ttl", "15m").stdout
    token = out.strip()
    assert out.count("\n") == 1 and token.startswith("mvj_")
    node = httpx.post(control.url + "/v1/register", json={"public_key": new_key(), "name": "alpha"},
                      headers={"Authorization": f"Bearer {token}"}).json()
    table = meshctl(control, "nodes").stdout
    assert "alpha" in table and node["mesh_ip"] in table and "online" in table
    listed = json.loads(meshctl(control, "nodes", "--json").stdout)
    assert [n["node_id"] for n in listed["nodes"]] == [node["node_id"]]
    assert "used" in meshctl(control, "token", "list").stdout

    meshctl(control, "node", "rm", node["node_id"])
    assert json.loads(meshctl(control, "nodes", "--json").stdout)["nodes"] == []
    missing = meshctl(control, "node", "rm", node["node_id"], check=False)
    assert missing.returncode != 0 and "404" in missing.stderr


def test_bad_arguments_are_clear_errors(control):
    bad = meshctl(control, "token", "create", "--ttl", "soon", check=False)
    assert bad.returncode == 2 and "invalid duration" in bad.stderr
    no_control = subprocess.run([MESHCTL, "nodes"], capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert no_control.returncode != 0 and "--control" in no_control.stderr


def test_serve_rejects_a_bad_cidr(tmp_path):
    result = subprocess.run([MESHCTL, "serve", "--state-dir", str(tmp_path), "--cidr", "10.0.0.1/8"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "invalid mesh CIDR" in result.stderr


def test_watch_streams_joins_and_removals(control):
    env = {"MESHCTL_CONTROL": control.url, "MESHCTL_ADMIN_TOKEN_FILE": str(control.state_dir / "admin.token")}
    watch = subprocess.Popen([MESHCTL, "watch", "--duration", "4"], stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    token = control.join_token()
    node = httpx.post(control.url + "/v1/register", json={"public_key": new_key(), "name": "beta"},
                      headers={"Authorization": f"Bearer {token}"}).json()
    httpx.delete(f"{control.url}/v1/nodes/{node['node_id']}", headers=control.admin)
    out, _ = watch.communicate(timeout=30)
    assert "joined   beta" in out and "removed  beta" in out


def test_serve_speaks_tls_with_the_given_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    proc = ControlProcess(tmp_path / "state", tls=(cert, key)).start()
    try:
        assert httpx.get(proc.url + "/healthz", timeout=5, verify=proc.verify).json()["status"] == "ok"
        with pytest.raises(httpx.ConnectError):
            httpx.get(proc.url + "/healthz", timeout=5)  # not trusted without the CA
        out = subprocess.run([MESHCTL, "nodes", "--control", proc.url, "--admin-token-file",
                              str(proc.state_dir / "admin.token"), "--ca", str(cert)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "revision 0" in out.stdout
    finally:
        proc.stop()
