"""The converged lab mesh, checked on every host with testinfra (the `host` fixture)."""
import json
import os

import testinfra.utils.ansible_runner

# The lab writes this inventory; molecule passes the same file to testinfra (--ansible-inventory).
INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(
    os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "inventory", "molecule", "hosts.yml"))
NODES = INVENTORY.get_hosts("meshvpn_nodes")
testinfra_hosts = NODES


def test_the_lab_has_nodes_to_verify():
    assert len(NODES) >= 2, "no lab nodes in the inventory: verify would check nothing"


def status(host) -> dict:
    venv = host.ansible.get_variables()["meshvpn_common_venv"]
    return json.loads(host.check_output(f"{venv}/bin/meshagent status --state-dir /var/lib/meshvpn --json"))


def test_interface_is_up_with_its_mesh_ip(host):
    me = status(host)
    assert host.interface("mesh0").exists
    assert f"{me['mesh_ip']}/32" in host.check_output("ip -br addr show mesh0")
    assert me["control"] == "connected"


def test_exactly_the_live_peers_with_their_keys_and_host_routes(host):
    me = status(host)
    live = {p["public_key"]: p["mesh_ip"] for p in me["peers"] if p["online"]}
    assert len(live) == len(NODES) - 1
    configured = dict(line.split("\t") for line in host.check_output("wg show mesh0 allowed-ips").splitlines())
    assert configured == {key: f"{ip}/32" for key, ip in live.items()}
    routes = host.check_output("ip -4 route show dev mesh0 proto 77").splitlines()
    assert sorted(line.split()[0] for line in routes) == sorted(live.values())


def test_every_other_mesh_ip_answers_ping(host):
    for peer in status(host)["peers"]:
        assert host.run(f"ping -c 2 -i 0.2 -W 1 {peer['mesh_ip']}").rc == 0, peer["name"]


def test_chat_listens_on_the_mesh_ip_only(host):
    me = status(host)
    assert host.socket(f"tcp://{me['mesh_ip']}:7000").is_listening
    assert not host.socket("tcp://0.0.0.0:7000").is_listening


def test_chat_ui_is_published_as_the_lab_asked_and_answers_only_for_its_address(host):
    ui = host.ansible.get_variables()["meshvpn_chat_ui_listen"]
    assert host.socket(f"tcp://{ui}").is_listening
    assert host.file("/var/lib/meshvpn/chat.json").mode == 0o600  # it holds the UI's token
    probe = "curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {}' http://" + ui + "/api/state"
    assert host.check_output(probe.format(ui)) == "200"
    assert host.check_output(probe.format("evil.example:7080")) == "421"
