"""The converged mesh on real VMs: systemd units as the roles declare them, kernel WireGuard, every
key at its mesh IP, routes, all-pairs ping, a chat message between two VMs. testinfra over SSH."""
import json
import os
import time

import testinfra
import testinfra.utils.ansible_runner

INVENTORY_FILE = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "inventory", "molecule-vm", "hosts.yml")
INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY_FILE)
NODES = INVENTORY.get_hosts("meshvpn_nodes")
CONTROLS = INVENTORY.get_hosts("meshvpn_control")
testinfra_hosts = CONTROLS + NODES
VENV = "/opt/meshvpn/venv"
# What every unit the roles render declares (roles/meshvpn_common/templates/program.service.j2), as
# systemd reports it in effect.
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
             "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
             "RestrictNamespaces": "no", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
             "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "UMask": "0077"}
UNITS = {"meshvpn-control": ("meshvpn", ""), "meshagent": ("root", "cap_net_admin cap_net_raw"),
         "meshchat": ("root", "")}


def remote(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY_FILE}")


def properties(host, unit: str) -> dict[str, str]:
    shown = host.check_output(f"systemctl show {unit} --property "
                              + ",".join([*HARDENING, "User", "CapabilityBoundingSet", "ActiveState",
                                          "UnitFileState", "NRestarts", "MainPID"]))
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def test_the_lab_has_vms_to_verify():
    assert len(CONTROLS) >= 1 and len(NODES) >= 2, "no VMs in the inventory: verify would check nothing"


def test_each_unit_runs_enabled_as_its_user_with_the_hardening_it_declares(host):
    name = host.backend.get_hostname()
    for unit, (user, capabilities) in UNITS.items():
        if (unit == "meshvpn-control") != (name in CONTROLS):
            continue
        shown = properties(host, unit)
        assert (shown["ActiveState"], shown["UnitFileState"]) == ("active", "enabled"), (unit, shown)
        assert shown["User"] in (user, "") and (user != "root" or shown["User"] in ("", "root")), (unit, shown["User"])
        process_user = host.check_output(f"ps -o user= -p {shown['MainPID']}").strip()
        assert process_user == user, (unit, process_user)
        assert shown["CapabilityBoundingSet"] == capabilities, (unit, shown["CapabilityBoundingSet"])
        for key, value in HARDENING.items():
            if key == "RestrictNamespaces":  # reported as the namespaces still allowed: none
                assert shown[key] in ("yes", ""), (unit, key, shown[key])
            else:
                assert shown[key] == value, (unit, key, shown[key])


def test_wireguard_is_the_kernel_s_and_no_wireguard_go_runs(host):
    if host.backend.get_hostname() not in NODES:
        return
    assert "wireguard" in host.check_output("ip -d link show mesh0").split()
    assert host.run("pgrep -x wireguard-go").rc == 1
    status = json.loads(host.check_output(f"{VENV}/bin/meshagent status --state-dir /var/lib/meshvpn --json"))
    assert status["backend"] == "kernel"


def test_every_node_has_every_other_node_s_key_at_its_mesh_ip_a_route_and_answers_ping():
    statuses = {name: json.loads(remote(name).check_output(
        f"{VENV}/bin/meshagent status --state-dir /var/lib/meshvpn --json")) for name in NODES}
    for name in NODES:
        host = remote(name)
        peers = dict(line.split("\t") for line in host.check_output("wg show mesh0 allowed-ips").splitlines())
        keys = {ips.removesuffix("/32"): key for key, ips in peers.items()}
        routes = host.check_output("ip route show dev mesh0")
        for other in NODES:
            if other == name:
                continue
            ip = statuses[other]["mesh_ip"]
            assert keys.get(ip) == statuses[other]["public_key"], f"{name} has a wrong key for {other}"
            assert ip in routes, f"{name} has no route to {other}"
            assert host.run(f"ping -c 3 -i 0.3 -W 2 {ip}").rc == 0, f"{name} cannot ping {other} ({ip})"


def test_a_chat_message_goes_from_one_vm_to_another():
    sender, receiver = NODES[0], NODES[1]
    status = {name: json.loads(remote(name).check_output(
        f"{VENV}/bin/meshagent status --state-dir /var/lib/meshvpn --json")) for name in (sender, receiver)}
    text = f"hello {receiver} from {sender}, on VMs"
    remote(sender).check_output(
        f"{VENV}/bin/meshchat --state-dir /var/lib/meshvpn send {status[receiver]['mesh_ip']} '{text}'")
    assert text in remote(receiver).check_output(
        f"{VENV}/bin/meshchat --state-dir /var/lib/meshvpn history {status[sender]['mesh_ip']}")


def test_an_idle_agent_writes_nothing_and_its_cpu_and_memory_are_reported():
    """Over 30 s of a mesh at rest, no agent writes to WireGuard or the routes (the same counters
    as on wireguard-go); prints each agent's CPU share and RSS on the kernel backend (-s shows it)."""
    idle = 30
    hosts = {name: remote(name) for name in NODES}

    def sample(host) -> tuple[dict, int, int]:
        status = json.loads(host.check_output(f"{VENV}/bin/meshagent status --state-dir /var/lib/meshvpn --json"))
        pid = host.check_output("systemctl show meshagent -p MainPID --value").strip()
        fields = host.check_output(f"cat /proc/{pid}/stat").rsplit(")", 1)[1].split()
        rss_kib = int(host.check_output(f"awk '/^VmRSS:/ {{print $2}}' /proc/{pid}/status"))
        return status["writes"], int(fields[11]) + int(fields[12]), rss_kib  # utime + stime, in ticks

    before = {name: sample(host) for name, host in hosts.items()}
    started = {name: float(host.check_output("cut -d' ' -f1 /proc/uptime")) for name, host in hosts.items()}
    time.sleep(idle)
    for name, host in hosts.items():
        writes, ticks, rss_kib = sample(host)
        elapsed = float(host.check_output("cut -d' ' -f1 /proc/uptime")) - started[name]
        ticks_per_s = int(host.check_output("getconf CLK_TCK"))
        cpu = (ticks - before[name][1]) / ticks_per_s / elapsed
        print(f"vm idle {name}: writes {before[name][0]} -> {writes} over {elapsed:.0f} s, "
              f"agent CPU {100 * cpu:.1f} % of the emulated core, RSS {rss_kib / 1024:.1f} MB")
        assert writes is not None and writes == before[name][0], f"{name}'s agent wrote while the mesh was at rest"
