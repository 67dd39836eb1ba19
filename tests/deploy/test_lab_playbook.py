"""playbooks/lab.yml and lab_destroy.yml: lab hosts that Ansible reaches over SSH like VMs."""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

from testbed.lab import free_subnet
from testbed.meshlab import lab_marks

pytestmark = lab_marks()
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ansible(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run([str(BIN / tool), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return done


def recap(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("localhost"))
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def test_lab_hosts_are_created_idempotently_reached_over_ssh_and_destroyed(tmp_path):
    prefix = f"mvt{random.randrange(100, 999)}"
    extra = ["-e", "lab_nodes=2", "-e", f"meshvpn_lab_subnet=10.213.{free_subnet()}",
             "-e", f"meshvpn_lab_prefix={prefix}", "-e", f"meshvpn_lab_dir={tmp_path / 'lab'}",
             "-e", f"meshvpn_lab_inventory={tmp_path / 'hosts.yml'}"]
    try:
        first = ansible("ansible-playbook", "playbooks/lab.yml", *extra)
        assert recap(first.stdout)["changed"] > 0
        again = ansible("ansible-playbook", "playbooks/lab.yml", *extra)
        assert recap(again.stdout)["changed"] == 0, again.stdout

        inventory = ["-i", str(tmp_path / "hosts.yml")]
        names = ansible("ansible", "all", *inventory, "-m", "ansible.builtin.command", "-a", "hostname")
        for host in ("control", "node1", "node2"):
            assert re.search(rf"^{host} \| CHANGED .*\n{host}$", names.stdout, re.MULTILINE), names.stdout
        ansible("ansible", "node1", *inventory, "-m", "ansible.builtin.copy",
                "-a", "content=mine dest=/var/lib/meshvpn/owner")
        other = ansible("ansible", "node2", *inventory, "-m", "ansible.builtin.stat",
                        "-a", "path=/var/lib/meshvpn/owner")
        assert '"exists": false' in other.stdout  # each host's /var/lib/meshvpn is its own
        assert not Path("/var/lib/meshvpn/owner").exists()
    finally:
        ansible("ansible-playbook", "playbooks/lab_destroy.yml", "-e", f"meshvpn_lab_prefix={prefix}",
                "-e", f"meshvpn_lab_dir={tmp_path / 'lab'}", "-e", f"meshvpn_lab_inventory={tmp_path / 'hosts.yml'}")
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left


def test_a_lab_with_two_control_hosts_has_a_db_host_and_keeps_its_layout(tmp_path):
    prefix = f"mvt{random.randrange(100, 999)}"
    subnet = f"10.213.{free_subnet()}"
    lab = ["-e", f"meshvpn_lab_subnet={subnet}", "-e", f"meshvpn_lab_prefix={prefix}",
           "-e", f"meshvpn_lab_dir={tmp_path / 'lab'}", "-e", f"meshvpn_lab_inventory={tmp_path / 'hosts.yml'}"]
    try:
        ansible("ansible-playbook", "playbooks/lab.yml", "-e", "lab_nodes=1", "-e", "lab_controls=2", *lab)
        listed = ansible("ansible-inventory", "-i", str(tmp_path / "hosts.yml"), "--list").stdout
        inventory = json.loads(listed)
        assert inventory["meshvpn_control"]["hosts"] == ["control1", "control2"]
        assert inventory["meshvpn_db"]["hosts"] == ["db"] and inventory["meshvpn_nodes"]["hosts"] == ["node1"]
        addresses = {host: facts["ansible_host"] for host, facts in inventory["_meta"]["hostvars"].items()}
        assert addresses == {"control1": f"{subnet}.10", "control2": f"{subnet}.9", "db": f"{subnet}.2",
                             "node1": f"{subnet}.11"}
        refused = ansible("ansible-playbook", "playbooks/lab.yml", "-e", "lab_nodes=1", *lab, check=False)
        assert refused.returncode != 0 and "destroy the lab first" in refused.stdout  # control would take .10
    finally:
        ansible("ansible-playbook", "playbooks/lab_destroy.yml", "-e", f"meshvpn_lab_prefix={prefix}",
                "-e", f"meshvpn_lab_dir={tmp_path / 'lab'}", "-e", f"meshvpn_lab_inventory={tmp_path / 'hosts.yml'}")
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left
