"""The converged lab mesh, checked on every node with testinfra (the `host` fixture).

The control hosts are checked in test_control.py, what must agree across hosts in test_mesh.py."""
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


VENV = "/opt/meshvpn/venv"  # where the roles install meshvpn on every host


def status(host) -> dict:
    return json.loads(host.check_output(f"{VENV}/bin/meshagent status --state-dir /var/lib/meshvpn --json"))


def test_meshvpn_runs_from_its_own_virtualenv_installed_from_the_wheel(host):
    assert host.file(f"{VENV}/bin/meshagent").exists
    assert not host.file(os.environ["MOLECULE_PROJECT_DIRECTORY"]).listdir(), "the checkout is hidden from hosts"
    for program in ("meshagent", "meshchat"):
        found = [p for p in host.process.filter() if program in p.args and "supervisord" not in p.args]
        assert found and all(p.args.startswith(f"{VENV}/bin/python") for p in found), program


def test_the_link_is_up_and_wireguard_listens_on_its_port(host):
    flags = json.loads(host.check_output("ip -j link show mesh0"))[0]["flags"]
    assert "UP" in flags
    assert host.socket("udp://0.0.0.0:51820").is_listening or host.socket("udp://:::51820").is_listening


def test_secrets_on_the_node_are_private(host):
    for path in ("/var/lib/meshvpn/private.key", "/var/lib/meshvpn/node.json",
                 "/etc/meshvpn/agent.yml", "/var/lib/meshvpn/chat.json"):
        secret = host.file(path)
        assert secret.exists and secret.mode == 0o600 and secret.user == "root", path
    assert not host.file("/etc/meshvpn/join.token").exists, "an enrolled node keeps no join token"
    assert host.file("/var/lib/meshvpn").mode == 0o700
    assert host.file("/var/lib/meshvpn/agent.sock").mode & 0o077 == 0


def test_nothing_of_the_agent_listens_on_a_network_address(host):
    """The agent's status is a unix socket; chat's peer port is on the mesh IP only (its UI as the
    lab published it): nothing of meshvpn answers on a wildcard address."""
    listening = host.check_output("ss -Hltnp")
    for line in listening.splitlines():
        local = line.split()[3]
        if "meshagent" in line:
            raise AssertionError(f"the agent listens on {local}")
        if "meshchat" in line:
            assert not local.startswith(("0.0.0.0:", "*:", "[::]:")), line


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
