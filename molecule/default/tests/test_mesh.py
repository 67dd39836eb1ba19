"""What must agree across the hosts of the converged lab mesh: keys, mesh IPs, the control plane's
view, and a chat message between two nodes. Runs once (on the first control host)."""
import json
import os

import testinfra
import testinfra.utils.ansible_runner

INVENTORY_FILE = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "inventory", "molecule", "hosts.yml")
INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY_FILE)
NODES = INVENTORY.get_hosts("meshvpn_nodes")
testinfra_hosts = INVENTORY.get_hosts("meshvpn_control")[:1]
VENV = "/opt/meshvpn/venv"


def node(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY_FILE}")


def wireguard(name: str) -> tuple[str, dict[str, str]]:
    """A node's own public key, and the key each of its peers' mesh IPs has in its WireGuard config."""
    remote = node(name)
    own = remote.check_output("wg show mesh0 public-key").strip()
    peers = dict(line.split("\t") for line in remote.check_output("wg show mesh0 allowed-ips").splitlines())
    return own, {ips.removesuffix("/32"): key for key, ips in peers.items()}


def status(name: str) -> dict:
    return json.loads(node(name).check_output(f"{VENV}/bin/meshagent status --state-dir /var/lib/meshvpn --json"))


def test_every_node_has_every_other_node_s_own_key_at_its_own_mesh_ip():
    statuses = {name: status(name) for name in NODES}
    ips = [s["mesh_ip"] for s in statuses.values()]
    assert len(set(ips)) == len(ips) == len(NODES), "mesh IPs are unique"
    views = {name: wireguard(name) for name in NODES}
    for name, (own_key, _) in views.items():
        for other, (_, peers) in views.items():
            if other != name:
                assert peers[statuses[name]["mesh_ip"]] == own_key, f"{other} has a wrong key for {name}"


def test_the_control_plane_lists_every_node_online_at_the_current_revision(host):
    address = host.ansible.get_variables()["ansible_host"]
    state = host.ansible.get_variables().get("meshvpn_control_state_dir", "/var/lib/meshvpn-control")
    listed = json.loads(host.check_output(
        f"runuser -u meshvpn -- {VENV}/bin/meshctl nodes --json --control https://{address}:8700 "
        f"--ca /etc/meshvpn/tls/ca.crt --admin-token-file {state}/admin.token"))
    assert sorted(n["name"] for n in listed["nodes"]) == sorted(NODES)
    assert all(n["online"] and n["applied_revision"] == listed["revision"] for n in listed["nodes"]), listed


def test_a_chat_message_goes_from_one_node_to_another():
    sender, receiver = NODES[0], NODES[1]
    text = f"hello {receiver} from {sender}, verify"
    target = status(receiver)["mesh_ip"]
    node(sender).check_output(f"{VENV}/bin/meshchat --state-dir /var/lib/meshvpn send {target} '{text}'")
    history = node(receiver).check_output(
        f"{VENV}/bin/meshchat --state-dir /var/lib/meshvpn history {status(sender)['mesh_ip']}")
    assert text in history
