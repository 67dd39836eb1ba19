"""The VM lab's command line: Debian VMs with systemd and kernel WireGuard, for site.yml.

    python -m testbed.vmlab up [--nodes 3]      build the image once (cached), boot one control VM and
                                                N node VMs, wait for SSH, write the inventory
    python -m testbed.vmlab down                power every VM off, remove the lab (the image stays cached)
    python -m testbed.vmlab power-off NAME      pull NAME's plug (QEMU's monitor `quit`)
    python -m testbed.vmlab start NAME          boot NAME again (its overlay kept: a power cycle)
    python -m testbed.vmlab status              each VM, its address and whether it runs

--prefix/--subnet/--folder/--inventory let a second lab (molecule's) run beside `make up LAB=vm`'s.
The inventory has the lab's groups (meshvpn_control, meshvpn_nodes, meshvpn_db empty): from the
repository root, `ansible -i inventory/vm/hosts.yml meshvpn_nodes -m ping` works.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testbed.vmlab import image as images
from testbed.vmlab.machines import Lab, Machine

ROOT = Path(__file__).resolve().parents[2]


def machines_for(nodes: int) -> list[Machine]:
    return [Machine("control1", "meshvpn_control", 0),
            *(Machine(f"node{i}", "meshvpn_nodes", i) for i in range(1, nodes + 1))]


def inventory(lab: Lab, machines: list[Machine], inventory_path: Path) -> str:
    """The lab's inventory as YAML (JSON is YAML): SSH as root with the lab's key, systemd hosts."""
    def hosts(group: str) -> dict:
        found = {}
        for machine in machines:
            if machine.group == group:
                address = machine.address(lab.subnet)
                found[machine.name] = {"ansible_host": address, "meshvpn_vm_console": str(
                    lab.home(machine) / "console.log")}
                if group == "meshvpn_nodes":
                    found[machine.name]["meshvpn_chat_ui_listen"] = f"{address}:7080"
        return found

    document = {"all": {
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key),
                 "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                 "ansible_python_interpreter": "/usr/bin/python3",
                 # The lab's own command, for playbooks that power VMs off and on (molecule/vm).
                 "meshvpn_vm_lab_command": (f"{sys.executable} -m testbed.vmlab --prefix {lab.prefix} --subnet "
                                            f"{lab.subnet} --folder {lab.folder} --inventory {inventory_path}"),
                 "meshvpn_vm_lab_root": str(ROOT),
                 # Under software emulation Python starts about ten times slower: an agent restarted by
                 # systemd (2 s, then ~5 s of imports) would outlast the default threshold of 6 s.
                 "meshvpn_control_offline_after": 15},
        "children": {group: {"hosts": hosts(group)} for group in ("meshvpn_db", "meshvpn_control", "meshvpn_nodes")},
    }}
    return ("# Written by `python -m testbed.vmlab up`: the VM lab's hosts (QEMU guests on this machine).\n"
            + json.dumps(document, indent=2) + "\n")


def lab_of(args) -> Lab:
    """The lab: `up` makes sure of the current image; the other commands use the image the lab
    was made from (a later change to the image's build must not pull it from under running VMs)."""
    folder = Path(args.folder).resolve()
    recorded = folder / "image"
    if args.command == "up":
        image = images.ensure(log=lambda line: print(line, flush=True))
    elif recorded.exists():
        image = images.Image(Path(recorded.read_text().strip()))
    else:
        image = images.Image(images.cache_dir() / images.key())
    return Lab(args.prefix, args.subnet, folder, image)


def up(lab: Lab, args) -> None:
    lab.folder.mkdir(parents=True, exist_ok=True)
    (lab.folder / "image").write_text(f"{lab.image.root}\n")
    lab.key.parent.mkdir(exist_ok=True)
    shutil.copy(lab.image.ssh_key, lab.key)
    lab.key.chmod(0o600)
    machines = machines_for(args.nodes)
    lab.network_up()
    started = time.monotonic()
    for machine in machines:
        lab.create(machine)
        lab.start(machine)
    with ThreadPoolExecutor(len(machines)) as pool:
        waits = list(pool.map(lab.wait_ssh, machines))
    for machine, waited in zip(machines, waits, strict=True):
        print(f"{machine.name} {machine.address(lab.subnet)}: SSH after {waited:.0f} s", flush=True)
    target = Path(args.inventory)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(inventory(lab, machines, target.resolve()))
    print(f"{len(machines)} VMs up in {time.monotonic() - started:.0f} s; inventory {target}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.vmlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "power-off", "start", "status"))
    parser.add_argument("name", nargs="?")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--prefix", default="mvvm")
    parser.add_argument("--subnet", default="10.213.250")
    parser.add_argument("--folder", default=str(ROOT / ".lab-vm"))
    parser.add_argument("--inventory", default=str(ROOT / "inventory" / "vm" / "hosts.yml"))
    args = parser.parse_args(argv)
    lab = lab_of(args)
    if args.command == "up":
        up(lab, args)
        return 0
    if args.command == "down":
        lab.destroy()
        shutil.rmtree(lab.folder, ignore_errors=True)
        Path(args.inventory).unlink(missing_ok=True)
        return 0
    if args.command == "status":
        for machine in lab.machines():
            print(f"{machine.name:10} {machine.address(lab.subnet):15} {'running' if lab.running(machine) else 'off'}")
        return 0
    found = {machine.name: machine for machine in lab.machines()}
    if args.name not in found:
        parser.error(f"no VM named {args.name!r} in {lab.folder} (has: {', '.join(found) or 'none'})")
    if args.command == "power-off":
        lab.power_off(found[args.name])
    else:
        lab.start(found[args.name])
        print(f"{args.name}: SSH after {lab.wait_ssh(found[args.name]):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
