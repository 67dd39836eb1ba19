"""The control hosts of the converged lab mesh, checked with testinfra."""
import json
import os

import testinfra.utils.ansible_runner

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(
    os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "inventory", "molecule", "hosts.yml"))
testinfra_hosts = INVENTORY.get_hosts("meshvpn_control")
VENV = "/opt/meshvpn/venv"


def test_the_lab_has_a_control_host_to_verify():
    assert testinfra_hosts, "no control host in the inventory: verify would check nothing"


def address(host) -> str:
    return host.ansible.get_variables()["ansible_host"]


def test_the_control_plane_runs_and_answers_healthz_over_tls_verified_by_the_mesh_ca(host):
    assert "RUNNING" in host.check_output(f"{VENV}/bin/supervisorctl -c /etc/meshvpn/supervisord.conf "
                                          "status meshvpn-control")
    health = host.check_output(f"curl -sf --cacert /etc/meshvpn/tls/ca.crt https://{address(host)}:8700/healthz")
    assert json.loads(health)["status"] == "ok"
    assert host.run(f"curl -sf https://{address(host)}:8700/healthz").rc != 0, "an unknown CA must be refused"


def test_the_control_plane_runs_as_its_own_user_which_owns_only_its_state(host):
    pid = host.check_output(f"{VENV}/bin/supervisorctl -c /etc/meshvpn/supervisord.conf pid meshvpn-control")
    users = host.check_output(f"ps -o user= -p {pid}; ps -o user= --ppid {pid}").split()  # gunicorn + workers
    assert len(users) >= 2 and set(users) == {"meshvpn"}, users
    state = host.file("/var/lib/meshvpn-control")
    assert (state.user, state.group, state.mode) == ("meshvpn", "meshvpn", 0o700)
    assert not host.file("/var/lib/meshvpn/control").exists, "the state of the agent's directory is moved"


def test_the_control_plane_s_secrets_are_private(host):
    token = host.file("/var/lib/meshvpn-control/admin.token")
    assert (token.user, token.mode) == ("meshvpn", 0o600)
    for path in ("/etc/meshvpn/tls/server.key", "/etc/meshvpn/control.yml"):  # its group reads them
        secret = host.file(path)
        assert (secret.user, secret.group, secret.mode) == ("root", "meshvpn", 0o640), path
    ca_key = host.file("/etc/meshvpn/tls/ca.key")
    assert not ca_key.exists or (ca_key.user, ca_key.mode) == ("root", 0o600)
