"""site.yml on lab hosts: the whole mesh deployed by Ansible, idempotent, and the fault playbooks."""
from __future__ import annotations

import json
import random
import re

from tests.deploy.test_lab_playbook import ansible
from tests.meshlab import lab_marks

pytestmark = lab_marks()


def recaps(output: str) -> dict[str, dict[str, int]]:
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(\S+)\s+: (ok=.*)$", line)
        if match:
            found[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return found


def test_site_deploys_the_mesh_idempotently_and_survives_the_faults(tmp_path):
    prefix = f"mvs{random.randrange(100, 999)}"
    inventory = tmp_path / "hosts.yml"
    lab = ["-e", "lab_nodes=2", "-e", f"meshvpn_lab_subnet=10.214.{random.randrange(1, 250)}",
           "-e", f"meshvpn_lab_prefix={prefix}", "-e", f"meshvpn_lab_dir={tmp_path / 'lab'}",
           "-e", f"meshvpn_lab_inventory={inventory}"]
    inv = ["-i", str(inventory)]
    try:
        ansible("ansible-playbook", "playbooks/lab.yml", *lab)
        ansible("ansible-playbook", *inv, "site.yml")
        again = ansible("ansible-playbook", *inv, "site.yml")
        assert all(r["changed"] == 0 for r in recaps(again.stdout).values()), again.stdout  # idempotent

        status = ansible("ansible", *inv, "node1", "-m", "ansible.builtin.shell",
                         "-a", "{{ meshvpn_common_venv }}/bin/meshagent status --json")
        node1 = json.loads(status.stdout.split(">>", 1)[1])
        peer_ip = node1["peers"][0]["mesh_ip"]
        ansible("ansible", *inv, "node1", "-m", "ansible.builtin.command", "-a", f"ping -c 3 -i 0.2 -W 1 {peer_ip}")
        listening = ansible("ansible", *inv, "node1", "-m", "ansible.builtin.command", "-a", "ss -ltn")
        assert f"{node1['mesh_ip']}:7000" in listening.stdout and "0.0.0.0:7000" not in listening.stdout

        for playbook, extra in [("crash_node", ["-e", "target=node2"]), ("restart_node", ["-e", "target=node2"]),
                                ("control_down", []), ("control_up", []),
                                ("partition", ["-e", "target=node2"]), ("heal", ["-e", "target=node2"])]:
            done = ansible("ansible-playbook", *inv, f"playbooks/fault/{playbook}.yml", *extra)
            print(*re.findall(rf'"msg": "({playbook}: [^"]*)"', done.stdout), sep="\n")
    finally:
        ansible("ansible-playbook", "playbooks/lab_destroy.yml", "-e", f"meshvpn_lab_prefix={prefix}",
                "-e", f"meshvpn_lab_dir={tmp_path / 'lab'}", "-e", f"meshvpn_lab_inventory={inventory}")
