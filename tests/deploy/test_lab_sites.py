"""playbooks/lab.yml with lab_topology=sites: hosts in a public, a routed and two NAT sites, each
reached over SSH from this machine (through its NAT router's management path for natted hosts)."""
from __future__ import annotations

import random
import subprocess

import yaml

from testbed.lab import free_subnet
from testbed.meshlab import lab_marks
from tests.deploy.test_lab_playbook import ansible, recap

pytestmark = lab_marks()


def test_a_sites_lab_is_built_idempotently_reached_over_ssh_and_destroyed(tmp_path):
    prefix, subnet = f"mvt{random.randrange(100, 999)}", free_subnet()
    common = ["-e", f"meshvpn_lab_prefix={prefix}", "-e", f"meshvpn_lab_dir={tmp_path / 'lab'}",
              "-e", f"meshvpn_lab_inventory={tmp_path / 'hosts.yml'}"]
    extra = [*common, "-e", "lab_nodes=5", "-e", "lab_topology=sites", "-e", f"meshvpn_lab_subnet=10.213.{subnet}"]
    try:
        assert recap(ansible("ansible-playbook", "playbooks/lab.yml", *extra).stdout)["changed"] > 0
        again = ansible("ansible-playbook", "playbooks/lab.yml", *extra)
        assert recap(again.stdout)["changed"] == 0, again.stdout

        hosts = yaml.safe_load((tmp_path / "hosts.yml").read_text())["all"]["children"]["meshvpn_nodes"]["hosts"]
        assert {name: (host["meshvpn_lab_site"], host["meshvpn_lab_site_kind"], host["meshvpn_lab_seen_as"])
                for name, host in hosts.items()} == {
            "node1": ("public", "public", f"10.213.{subnet}.11"), "node2": ("public", "public", f"10.213.{subnet}.12"),
            "node3": ("routed1", "routed", f"10.214.{subnet}.13"), "node4": ("nat1", "nat", f"10.213.{subnet}.202"),
            "node5": ("nat2", "nat", f"10.213.{subnet}.203")}

        inventory = ["-i", str(tmp_path / "hosts.yml")]
        # SSH reaches a natted host unmasqueraded both ways: it sees this machine's own address.
        seen = ansible("ansible", "node4", *inventory, "-m", "ansible.builtin.shell", "-a", "echo $SSH_CONNECTION")
        assert f"10.213.{subnet}.254 " in seen.stdout and f" 10.215.{subnet}.14 22" in seen.stdout, seen.stdout
        control = f"10.213.{subnet}.10"
        ansible("ansible", "node3:node4:node5", *inventory, "-m", "ansible.builtin.wait_for",
                "-a", f"host={control} port=22 timeout=5")  # every site reaches the control host
    finally:
        ansible("ansible-playbook", "playbooks/lab_destroy.yml", *common)
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f".{subnet}.0/24" not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
