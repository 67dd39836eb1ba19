#!/usr/bin/python
"""Ansible module: one lab host (network + mount + UTS namespaces, a veth on the lab bridge, sshd)."""
from __future__ import annotations

DOCUMENTATION = r"""
module: meshvpn_labhost
short_description: Create or remove a meshvpn lab host on this machine
description:
  - A lab host is a network namespace with its own mount and UTS namespaces (held by an init
    process), private /etc/meshvpn, /var/lib/meshvpn, /var/log/meshvpn and /run/wireguard,
    its own hostname, a veth on the lab bridge with its own address, and sshd on that address.
  - The bridge lives in a switch namespace; the root namespace gets the bridge's gateway address.
  - Idempotent; processes are tracked by recorded pids.
options:
  name: {description: host name (also its hostname), required: true, type: str}
  address: {description: host address with prefix length, e.g. 10.213.77.2/24, type: str}
  gateway: {description: root namespace address on the bridge, with prefix length, type: str}
  prefix: {description: name prefix of namespaces and links, type: str, default: mvlab}
  lab_dir: {description: directory holding keys, pids and per-host directories, required: true, type: path}
  authorized_key: {description: public key file allowed to log in as root, type: path}
  state: {choices: [present, absent, switch, switch_absent], default: present, type: str}
"""

import os
import signal
import subprocess
import time
import zlib

from ansible.module_utils.basic import AnsibleModule

PRIVATE_DIRS = ("/etc/meshvpn", "/var/lib/meshvpn", "/var/log/meshvpn", "/run/wireguard")


def run(module, *args, check=True):
    rc, out, err = module.run_command(list(args))
    if check and rc != 0:
        module.fail_json(msg=f"{' '.join(args)} failed: {err.strip() or out.strip()}")
    return rc, out


def netns_exists(name):
    return os.path.exists(f"/run/netns/{name}")


def alive(pid_file):
    try:
        with open(pid_file) as handle:
            pid = int(handle.read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def ensure_switch(module, p):
    sw = f"{p['prefix']}sw"
    changed = False
    if not netns_exists(sw):
        run(module, "ip", "netns", "add", sw)
        run(module, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        run(module, "ip", "-n", sw, "link", "set", "br0", "up")
        changed = True
    root = f"{p['prefix']}gw"
    if run(module, "ip", "link", "show", root, check=False)[0] != 0:
        run(module, "ip", "link", "add", root, "type", "veth", "peer", "name", "gw", "netns", sw)
        run(module, "ip", "-n", sw, "link", "set", "gw", "master", "br0", "up")
        run(module, "ip", "addr", "add", p["gateway"], "dev", root)
        run(module, "ip", "link", "set", root, "up")
        changed = True
    return changed


def remove_switch(module, p):
    changed = run(module, "ip", "link", "del", f"{p['prefix']}gw", check=False)[0] == 0
    if netns_exists(f"{p['prefix']}sw"):
        run(module, "ip", "netns", "del", f"{p['prefix']}sw")
        changed = True
    return changed


def ensure_host(module, p):
    name, prefix, lab = p["name"], p["prefix"], p["lab_dir"]
    ns, sw, home = f"{prefix}-{name}", f"{prefix}sw", os.path.join(lab, "hosts", name)
    changed = False
    if not netns_exists(ns):
        run(module, "ip", "netns", "add", ns)
        changed = True
    peer = f"{prefix[:6]}{zlib.crc32(name.encode()) % 10 ** 8}"[:15]  # stable across runs
    if run(module, "ip", "-n", ns, "link", "show", "eth0", check=False)[0] != 0:
        run(module, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", sw)
        run(module, "ip", "-n", sw, "link", "set", peer, "master", "br0", "up")
        run(module, "ip", "-n", ns, "addr", "add", p["address"], "dev", "eth0")
        run(module, "ip", "-n", ns, "link", "set", "eth0", "up")
        run(module, "ip", "-n", ns, "link", "set", "lo", "up")
        changed = True
    init_pid_file = os.path.join(home, "init.pid")
    init = alive(init_pid_file)
    if init is None:
        for directory in PRIVATE_DIRS:
            os.makedirs(os.path.join(home, directory.strip("/").replace("/", "_")), exist_ok=True)
        binds = " && ".join(f"mkdir -p {d} && mount --bind {os.path.join(home, d.strip('/').replace('/', '_'))} {d}"
                            for d in PRIVATE_DIRS)
        script = f"{binds} && hostname {name} && exec ip netns exec {ns} sleep infinity"
        with open(os.path.join(home, "init.log"), "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
                                    start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log)
        for _ in range(100):
            if cmdline(proc.pid).startswith(b"sleep"):
                break
            time.sleep(0.05)
        else:
            module.fail_json(msg=f"lab host {name}: init did not start; see {home}/init.log")
        with open(init_pid_file, "w") as handle:
            handle.write(str(proc.pid))
        init, changed = proc.pid, True
    sshd_pid_file = os.path.join(home, "sshd.pid")
    if alive(sshd_pid_file) is None:
        address = p["address"].split("/")[0]
        keys = os.path.join(lab, "ssh")
        config = os.path.join(home, "sshd_config")
        with open(config, "w") as handle:
            handle.write(f"ListenAddress {address}\nHostKey {keys}/host_ed25519\nPidFile {sshd_pid_file}\n"
                         f"AuthorizedKeysFile {p['authorized_key']}\nPermitRootLogin prohibit-password\n"
                         "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                         "AcceptEnv LANG LC_*\nSubsystem sftp internal-sftp\n")
        enter = ["nsenter", "--target", str(init), "--mount", "--uts", "--net", "--"]
        run(module, *enter, "mkdir", "-p", "/run/sshd")
        run(module, *enter, "/usr/sbin/sshd", "-f", config)
        for _ in range(100):
            if alive(sshd_pid_file):
                break
            time.sleep(0.05)
        changed = True
    return changed, init


def remove_host(module, p):
    name, prefix, lab = p["name"], p["prefix"], p["lab_dir"]
    ns, home = f"{prefix}-{name}", os.path.join(lab, "hosts", name)
    changed = False
    if netns_exists(ns):
        _, out = run(module, "ip", "netns", "pids", ns, check=False)
        for pid in out.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
                changed = True
            except (OSError, ValueError):
                pass
    for pid_file in ("sshd.pid", "init.pid"):
        pid = alive(os.path.join(home, pid_file))
        if pid:
            os.kill(pid, signal.SIGKILL)
            changed = True
    if netns_exists(ns):
        time.sleep(0.2)
        run(module, "ip", "netns", "del", ns)
        changed = True
    return changed


def main():
    module = AnsibleModule(argument_spec={
        "name": {"type": "str"}, "address": {"type": "str"}, "gateway": {"type": "str"},
        "prefix": {"type": "str", "default": "mvlab"}, "lab_dir": {"type": "path", "required": True},
        "authorized_key": {"type": "path"},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent", "switch", "switch_absent"]}},
        required_if=[("state", "present", ("name", "address", "authorized_key")), ("state", "absent", ("name",)),
                     ("state", "switch", ("gateway",))])
    p = module.params
    if p["state"] == "switch":
        module.exit_json(changed=ensure_switch(module, p))
    if p["state"] == "switch_absent":
        module.exit_json(changed=remove_switch(module, p))
    if p["state"] == "absent":
        module.exit_json(changed=remove_host(module, p))
    changed, init = ensure_host(module, p)
    module.exit_json(changed=changed, init_pid=init, netns=f"{p['prefix']}-{p['name']}")


if __name__ == "__main__":
    main()
