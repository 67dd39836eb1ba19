"""The HA lab after its faults, checked with testinfra (the `host` fixture): every node connected
with every peer online, every control host serving all of them with the one CA, control2 behind
HAProxy (meshvpn_control_tls_proxy) seeing each node's own address, and PostgreSQL letting in only
the control hosts, over TLS only, verified with the mesh's CA."""
import hashlib
import json
import os

import pytest
import testinfra
import testinfra.utils.ansible_runner

INVENTORY_FILE = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "inventory", "molecule-ha", "hosts.yml")
INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY_FILE)
NODES = INVENTORY.get_hosts("meshvpn_nodes")
CONTROLS = INVENTORY.get_hosts("meshvpn_control")
testinfra_hosts = CONTROLS + INVENTORY.get_hosts("meshvpn_db") + NODES
VENV = "/opt/meshvpn/venv"


def test_the_lab_has_two_control_hosts_a_db_host_and_nodes():
    assert len(CONTROLS) == 2 and INVENTORY.get_hosts("meshvpn_db") and len(NODES) >= 3


def name(host) -> str:
    return host.backend.get_hostname()


def only(host, group: str) -> None:
    if name(host) not in INVENTORY.get_hosts(group):
        pytest.skip(f"not in {group}")


def test_every_node_is_connected_with_every_other_node_online(host):
    only(host, "meshvpn_nodes")
    me = json.loads(host.check_output(f"{VENV}/bin/meshagent status --state-dir /var/lib/meshvpn --json"))
    urls = [f"https://{INVENTORY.get_variables(c)['ansible_host']}:8700" for c in CONTROLS]
    assert me["control"] == "connected" and me["control_url"] in urls
    assert sorted(p["name"] for p in me["peers"] if p["online"]) == sorted(set(NODES) - {name(host)})
    agent = host.file("/etc/meshvpn/agent.yml").content_string
    assert all(url in agent for url in urls), "the agent must know every control host"


def test_every_control_host_serves_every_node_online_with_the_one_ca(host):
    only(host, "meshvpn_control")
    nodes = json.loads(host.check_output(
        f"runuser -u meshvpn -- {VENV}/bin/meshctl nodes --json "
        f"--control https://{host.ansible.get_variables()['ansible_host']}:8700 --ca /etc/meshvpn/tls/ca.crt "
        "--admin-token-file /var/lib/meshvpn-control/admin.token"))["nodes"]
    assert sorted(n["name"] for n in nodes if n["online"]) == sorted(NODES)
    first = testinfra.get_host(f"ansible://{CONTROLS[0]}?ansible_inventory={INVENTORY_FILE}")
    digest = hashlib.sha256(host.file("/etc/meshvpn/tls/ca.crt").content).hexdigest()
    assert digest == hashlib.sha256(first.file("/etc/meshvpn/tls/ca.crt").content).hexdigest()
    assert host.run("openssl verify -CAfile /etc/meshvpn/tls/ca.crt /etc/meshvpn/tls/server.crt").rc == 0
    assert "postgresql://" in host.file("/etc/meshvpn/control.yml").content_string
    config = host.file("/etc/meshvpn/control.yml")  # it holds the database password: its group reads it
    assert (config.user, config.group, config.mode) == ("root", "meshvpn", 0o640)


def proxied(host) -> bool:
    return bool(host.ansible.get_variables().get("meshvpn_control_tls_proxy"))


def test_the_lab_puts_haproxy_in_front_of_one_control_host():
    assert [bool(INVENTORY.get_variables(c).get("meshvpn_control_tls_proxy")) for c in CONTROLS] == [False, True]


def test_haproxy_terminates_tls_in_front_of_the_control_plane_where_asked(host):
    only(host, "meshvpn_control")
    address = host.ansible.get_variables()["ansible_host"]
    config = host.file("/etc/meshvpn/control.yml").content_string
    listening = host.check_output("ss -Htlnp")
    programs = host.check_output(f"{VENV}/bin/supervisorctl -c /etc/meshvpn/supervisord.conf status")
    if not proxied(host):
        assert "meshvpn-tls-proxy" not in programs and "haproxy" not in listening
        assert f'listen: "{address}:8700"' in config and "tls_key:" in config
        return
    assert "meshvpn-tls-proxy" in programs and "RUNNING" in programs.split("meshvpn-tls-proxy")[1].splitlines()[0]
    # HAProxy has the public port; the control plane only loopback, plain, trusting HAProxy alone.
    assert 'listen: "127.0.0.1:8701"' in config and "trusted_proxies: 127.0.0.1/32" in config
    assert "tls_key:" not in config and "tls_cert:" not in config
    assert any(f"{address}:8700" in line and "haproxy" in line for line in listening.splitlines())
    assert any("127.0.0.1:8701" in line and "haproxy" not in line for line in listening.splitlines())
    assert not any(f"{address}:8701" in line or "0.0.0.0:8701" in line for line in listening.splitlines())
    key = host.file("/etc/meshvpn/haproxy/server.crt.key")  # the server key: root's, read by HAProxy's group
    assert (key.user, key.group, key.mode) == ("root", "haproxy", 0o640)
    assert key.content == host.file("/etc/meshvpn/tls/server.key").content
    # HAProxy's own user may enter neither the control plane's TLS directory nor its state.
    assert host.run("runuser -u haproxy -- cat /etc/meshvpn/tls/server.key").rc != 0
    assert host.run("runuser -u haproxy -- ls /var/lib/meshvpn-control").rc != 0
    pid = host.check_output(f"{VENV}/bin/supervisorctl -c /etc/meshvpn/supervisord.conf pid meshvpn-tls-proxy")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "haproxy", "HAProxy runs as its own user"
    assert "libjemalloc.so.2" in host.check_output(f"cat /proc/{pid}/maps"), "HAProxy allocates with jemalloc"
    # The certificate HAProxy presents is the control host's own, from the mesh's CA.
    served = host.run(f"openssl s_client -connect {address}:8700 -CAfile /etc/meshvpn/tls/ca.crt -verify_return_error "
                      "</dev/null")
    assert served.rc == 0 and "Verify return code: 0 (ok)" in served.stdout


def test_each_node_is_seen_at_its_own_address_through_either_control_host(host):
    """Behind HAProxy the control plane takes a node's address from the X-Forwarded-For HAProxy
    writes: every node's reflexive endpoint is its own address (the nodes heartbeat through control2
    while control1 is lost), never missing for looking like a loopback client."""
    only(host, "meshvpn_control")
    nodes = json.loads(host.check_output(
        f"runuser -u meshvpn -- {VENV}/bin/meshctl nodes --json "
        f"--control https://{host.ansible.get_variables()['ansible_host']}:8700 --ca /etc/meshvpn/tls/ca.crt "
        "--admin-token-file /var/lib/meshvpn-control/admin.token"))["nodes"]
    seen = {n["name"]: n["reflexive_endpoint"] for n in nodes}
    expected = {n: f"{INVENTORY.get_variables(n)['meshvpn_lab_seen_as']}:{port}"
                for n, port in ((n["name"], n["listen_port"]) for n in nodes)}
    assert seen == expected


def test_postgresql_lets_in_only_the_control_hosts(host):
    only(host, "meshvpn_db")
    hba = host.file("/var/lib/meshvpn/postgresql/15/main/pg_hba.conf").content_string
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    addresses = sorted(f"{INVENTORY.get_variables(c)['ansible_host']}/32" for c in CONTROLS)
    assert rules[0] == ["local", "all", "postgres", "peer"]
    assert sorted(rule[3] for rule in rules[1:]) == addresses
    assert all(rule[:3] == ["hostssl", "meshvpn", "meshvpn"] and rule[4] == "scram-sha-256" for rule in rules[1:])
    assert host.file("/etc/meshvpn/db.password").mode == 0o600
    address = host.ansible.get_variables()["ansible_host"]
    assert host.socket(f"tcp://{address}:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_each_control_host_reaches_postgresql_over_verified_tls_only(host):
    """The control plane's URL asks for verify-full with the mesh's CA; the same credentials without
    TLS are refused (hostssl), and a CA that did not sign the server's certificate fails."""
    only(host, "meshvpn_control")
    url = next(line.split(":", 1)[1].strip().strip('"') for line in
               host.file("/etc/meshvpn/control.yml").content_string.splitlines() if line.startswith("db:"))
    assert url.endswith("?sslmode=verify-full&sslrootcert=/etc/meshvpn/tls/ca.crt"), url
    probe = (f"{VENV}/bin/python -c 'import sys, psycopg2; "
             "psycopg2.connect(sys.argv[1], connect_timeout=5, **dict(a.split(\"=\", 1) for a in sys.argv[2:]))"
             ".cursor().execute(\"select 1\")'")
    assert host.run(f"{probe} '{url}'").rc == 0
    plain = host.run(f"{probe} '{url}' sslmode=disable")
    assert plain.rc != 0 and "no encryption" in plain.stderr, plain.stderr
    other_ca = host.run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                        "-subj /CN=other -keyout /tmp/other-ca.key -out /tmp/other-ca.crt")
    assert other_ca.rc == 0, other_ca.stderr
    forged = host.run(f"{probe} '{url}' sslrootcert=/tmp/other-ca.crt")
    assert forged.rc != 0 and "certificate verify failed" in forged.stderr, forged.stderr
