"""The HA lab after its faults, checked with testinfra (the `host` fixture): every node connected
with every peer online, every control host serving all of them with the one CA, and PostgreSQL
letting in only the control hosts."""
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


def test_postgresql_lets_in_only_the_control_hosts(host):
    only(host, "meshvpn_db")
    hba = host.file("/var/lib/meshvpn/postgresql/15/main/pg_hba.conf").content_string
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    addresses = sorted(f"{INVENTORY.get_variables(c)['ansible_host']}/32" for c in CONTROLS)
    assert rules[0] == ["local", "all", "postgres", "peer"]
    assert sorted(rule[3] for rule in rules[1:]) == addresses
    assert all(rule[:3] == ["host", "meshvpn", "meshvpn"] and rule[4] == "scram-sha-256" for rule in rules[1:])
    assert host.file("/etc/meshvpn/db.password").mode == 0o600
    address = host.ansible.get_variables()["ansible_host"]
    assert host.socket(f"tcp://{address}:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening
