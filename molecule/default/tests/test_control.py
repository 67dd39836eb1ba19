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


def test_the_control_plane_s_secrets_are_private(host):
    state = host.ansible.get_variables().get("meshvpn_control_state_dir", "/var/lib/meshvpn/control")
    for path in (f"{state}/admin.token", "/etc/meshvpn/tls/server.key", "/etc/meshvpn/control.yml"):
        secret = host.file(path)
        assert secret.exists and secret.mode & 0o077 == 0, path
