#!/usr/bin/python
"""Ansible module: one lab host (network + mount + UTS namespaces, a veth on a lab bridge, sshd), one site
router (a namespace between the public bridge and its site's LAN bridge: plain forwarding or a masquerading
NAT), or the public bridge itself. The NAT routers' nftables ruleset is module_utils/meshvpn_lab_nft.py's (the
pytest lab's testbed/nft.py, one file for both labs); must not touch anything outside the namespaces, links and
routes it names."""
from __future__ import annotations

DOCUMENTATION = r"""
module: meshvpn_labhost
short_description: Create or remove a meshvpn lab host, site router or bridge on this machine
description:
  - A lab host is a network namespace with its own mount and UTS namespaces (held by an init
    process) and its own root filesystem, like a VM's - an overlay of this machine's C(/) with a
    private upper layer (C(.lab/hosts/NAME/upper)), so packages and virtualenvs a role installs stay
    in the host - with its own C(/run) and C(/tmp), the repository checkout hidden, private
    /etc/meshvpn, /var/lib/meshvpn and /var/log/meshvpn (bound from C(.lab/hosts/NAME/), where the
    controller reads them), its own hostname, a veth on the lab bridge with its own address, and
    sshd on that address.
  - The public bridge lives in a switch namespace; the root namespace gets the bridge's gateway address.
  - A site router (state router) is a namespace with a C(wan) veth on the public bridge and a C(lan)
    bridge for its site; hosts of the site (option site) get their veth on that bridge. A routed site's
    router only forwards; a NAT site's router masquerades out of C(wan) (port-preserving), forwards only
    what its LAN started, drops new inbound connections to itself, and lets C(management) open SSH
    (TCP 22) to its hosts. The root namespace gets a route to every site's LAN via its router.
  - Idempotent; processes are tracked by recorded pids. A host or router that exists with other
    addresses is an error (destroy the lab first).
options:
  name: {description: host name (also its hostname) or site name, required: true, type: str}
  address: {description: "host address with prefix length, e.g. 10.213.77.2/24", type: str}
  gateway: {description: "root namespace address on the bridge, with prefix length", type: str}
  prefix: {description: name prefix of namespaces and links, type: str, default: mvlab}
  lab_dir: {description: "directory of keys, pids, per-host and per-router files", required: true, type: path}
  authorized_key: {description: public key file allowed to log in as root, type: path}
  hide:
    description: "paths of this machine a host must not see (an empty tmpfs over each), e.g. the repository"
    type: list
    elements: path
    default: []
  site: {description: the site router on whose LAN bridge a host sits (default the public bridge), type: str}
  routes:
    description: routes of the host or router, each C(dest) (a prefix or C(default)) C(via) an address
    type: list
    elements: dict
    default: []
  kind: {description: a router's kind, choices: [routed, nat], type: str}
  wan: {description: a router's address on the public bridge with prefix length, type: str}
  lan: {description: a router's address on its site's LAN with prefix length, type: str}
  management: {description: the address a NAT router lets open SSH to its hosts, type: str}
  state: {choices: [present, absent, switch, switch_absent, router, router_absent], default: present, type: str}
"""

import ipaddress
import json
import os
import signal
import subprocess
import time
import zlib

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.meshvpn_lab_nft import NAT_TABLE, nat_ruleset, replace_table

# Directories the controller reads from outside (the CA, the admin token, logs), bound into the host.
PRIVATE_DIRS = ("/etc/meshvpn", "/var/lib/meshvpn", "/var/lib/meshvpn-control", "/var/log/meshvpn")
LAB_DIR = "/etc/meshvpn-lab"  # inside a host: its sshd's configuration, keys and pid file


def run(module, *args, check=True, data=None):
    rc, out, err = module.run_command(list(args), data=data)
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


def ip(ns):
    """`ip` acting in namespace ns (None: the root namespace)."""
    return ["ip", "-n", ns] if ns else ["ip"]


def router_netns(prefix, site):
    return f"{prefix}-site-{site}"


def addressed(module, ns, link, address):
    """Whether link exists (with address: fine; without: the lab was built another way, so fail)."""
    rc, out = run(module, *ip(ns), "-o", "-4", "addr", "show", "dev", link, check=False)
    if rc != 0:
        return False
    if f" {address} " not in out:
        module.fail_json(msg=f"{link} in {ns} exists without {address} (another lab layout?): "
                             "run playbooks/lab_destroy.yml first")
    return True


def ensure_routes(module, ns, routes):
    changed = False
    for route in routes:
        _, out = run(module, *ip(ns), "route", "show", route["dest"])
        if f" via {route['via']} " not in f" {' '.join(out.split())} ":
            run(module, *ip(ns), "route", "replace", route["dest"], "via", route["via"])
            changed = True
    return changed


def ensure_table(module, ns, home, text):
    """The NAT table in router namespace ns is `text` (empty: absent). Unchanged when the table reads
    as it did right after this module last wrote it (recorded in home/nft.json)."""
    record = os.path.join(home, "nft.json")

    def listing():
        rc, out = run(module, "ip", "netns", "exec", ns, "nft", "list", "table", "ip", NAT_TABLE, check=False)
        return out if rc == 0 else ""

    try:
        with open(record) as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        saved = {}
    now = listing()
    if (saved.get("applied") == text and saved.get("listing") == now) or not (text or now):
        return False
    run(module, "ip", "netns", "exec", ns, "nft", "-f", "-", data=replace_table("ip", NAT_TABLE, text))
    with open(record, "w") as handle:
        json.dump({"applied": text, "listing": listing()}, handle)
    return True


def ensure_router(module, p):
    name, prefix = p["name"], p["prefix"]
    ns, sw, home = router_netns(prefix, name), f"{prefix}sw", os.path.join(p["lab_dir"], "routers", name)
    wan, lan = ipaddress.ip_interface(p["wan"]), ipaddress.ip_interface(p["lan"])
    os.makedirs(home, exist_ok=True)
    changed = False
    if not netns_exists(ns):
        run(module, "ip", "netns", "add", ns)
        run(module, "ip", "-n", ns, "link", "set", "lo", "up")
        changed = True
    if not addressed(module, ns, "wan", p["wan"]):
        peer = f"{prefix[:6]}w{zlib.crc32(name.encode()) % 10 ** 7}"  # stable across runs
        run(module, "ip", "-n", ns, "link", "add", "wan", "type", "veth", "peer", "name", peer, "netns", sw)
        run(module, "ip", "-n", sw, "link", "set", peer, "master", "br0", "up")
        run(module, "ip", "-n", ns, "addr", "add", p["wan"], "dev", "wan")
        run(module, "ip", "-n", ns, "link", "set", "wan", "up")
        changed = True
    if not addressed(module, ns, "lan", p["lan"]):
        run(module, "ip", "-n", ns, "link", "add", "lan", "type", "bridge")
        run(module, "ip", "-n", ns, "addr", "add", p["lan"], "dev", "lan")
        run(module, "ip", "-n", ns, "link", "set", "lan", "up")
        changed = True
    if run(module, "ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward")[1].strip() != "1":
        run(module, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        changed = True
    changed |= ensure_routes(module, ns, p["routes"])
    # This machine reaches the site's hosts through the router: a routed site's for anything,
    # a NAT site's for SSH only (its router forwards nothing else inbound).
    changed |= ensure_routes(module, None, [{"dest": str(lan.network), "via": str(wan.ip)}])
    changed |= ensure_table(module, ns, home, nat_ruleset(p["management"]) if p["kind"] == "nat" else "")
    with open(os.path.join(home, "router.json"), "w") as handle:  # what router_absent undoes
        json.dump({"lan": str(lan.network)}, handle)
    return changed


def remove_router(module, p):
    ns, home = router_netns(p["prefix"], p["name"]), os.path.join(p["lab_dir"], "routers", p["name"])
    changed = False
    try:
        with open(os.path.join(home, "router.json")) as handle:
            lan = json.load(handle)["lan"]
        changed = run(module, "ip", "route", "del", lan, check=False)[0] == 0
    except (OSError, ValueError, KeyError):
        pass
    if netns_exists(ns):
        run(module, "ip", "netns", "del", ns)  # its links go with it: wan's peer, the LAN bridge
        changed = True
    return changed


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


def init_script(name, ns, home, hide):
    """The shell script of a host's init, run in new mount and UTS namespaces: the host's own root
    filesystem (an overlay of this machine's `/` with a private upper layer, so whatever a role
    installs stays in the host, as on a VM), its own /run and /tmp, its own empty /root (as a fresh
    VM's: the controller's dotfiles must not run in it; its ~/.bashrc's pyenv init made every SSH
    login wait up to 60 s for pyenv's rehash lock), the paths in `hide` (the
    repository checkout: a host runs only what was installed into it) empty, the private
    directories the controller reads bound in, its hostname; then `sleep` as the host's init, in
    the host's network namespace."""
    root = f"{home}/root"
    binds = "".join(f"mkdir -p {root}{d} && mount --bind {home}/{d.strip('/').replace('/', '_')} {root}{d}\n"
                    for d in PRIVATE_DIRS)
    hidden = "".join(f"mkdir -p {root}{path} && mount -t tmpfs -o mode=0755 tmpfs {root}{path}\n" for path in hide)
    return f"""set -e
mkdir -p {root} {home}/upper {home}/work
mount -t overlay overlay -o lowerdir=/,upperdir={home}/upper,workdir={home}/work {root}
mount -t proc proc {root}/proc
mount --rbind /dev {root}/dev
mount -t tmpfs -o mode=0755 tmpfs {root}/run
mkdir -p {root}/run/wireguard {root}/run/sshd
mount -t tmpfs -o mode=1777 tmpfs {root}/tmp
mount -t tmpfs -o mode=0700 tmpfs {root}/root
{hidden}{binds}mkdir -p {root}{LAB_DIR} && mount --bind {home}/lab {root}{LAB_DIR}
hostname {name}
exec nsenter --net=/run/netns/{ns} chroot {root} sh -c 'mount -t sysfs sysfs /sys && exec sleep infinity'
"""


def boot(module, p, ns, home):
    """Start the host's init (see `init_script`); its pid."""
    for directory in (*PRIVATE_DIRS, "/lab"):
        os.makedirs(os.path.join(home, directory.strip("/").replace("/", "_")), exist_ok=True)
    script = init_script(p["name"], ns, home, [os.path.realpath(path) for path in p["hide"]])
    with open(os.path.join(home, "init.log"), "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
                                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log)
    for _ in range(200):
        if cmdline(proc.pid).startswith(b"sleep"):
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    else:
        module.fail_json(msg=f"lab host {p['name']}: init did not start; see {home}/init.log")
    if not cmdline(proc.pid).startswith(b"sleep"):
        module.fail_json(msg=f"lab host {p['name']}: init failed; see {home}/init.log")
    with open(os.path.join(home, "init.pid"), "w") as handle:
        handle.write(str(proc.pid))
    return proc.pid


def write_sshd_files(p, home):
    """sshd's configuration, host key and authorized key, in the directory the host sees as LAB_DIR."""
    lab, keys, address = os.path.join(home, "lab"), os.path.join(p["lab_dir"], "ssh"), p["address"].split("/")[0]
    for source, target in ((f"{keys}/host_ed25519", "host_ed25519"), (p["authorized_key"], "authorized_keys")):
        with open(source, "rb") as found, open(os.path.join(lab, target), "wb") as copy:
            copy.write(found.read())
        os.chmod(os.path.join(lab, target), 0o600)
    with open(os.path.join(lab, "sshd_config"), "w") as handle:
        handle.write(f"ListenAddress {address}\nHostKey {LAB_DIR}/host_ed25519\nPidFile {LAB_DIR}/sshd.pid\n"
                     f"AuthorizedKeysFile {LAB_DIR}/authorized_keys\nPermitRootLogin prohibit-password\n"
                     "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                     "AcceptEnv LANG LC_*\nSubsystem sftp internal-sftp\n")


def ensure_host(module, p):
    name, prefix, lab = p["name"], p["prefix"], p["lab_dir"]
    ns, home = f"{prefix}-{name}", os.path.join(lab, "hosts", name)
    sw, bridge = (router_netns(prefix, p["site"]), "lan") if p["site"] else (f"{prefix}sw", "br0")
    changed = False
    if not netns_exists(ns):
        run(module, "ip", "netns", "add", ns)
        changed = True
    peer = f"{prefix[:6]}{zlib.crc32(name.encode()) % 10 ** 8}"[:15]  # stable across runs
    if not addressed(module, ns, "eth0", p["address"]):
        run(module, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", sw)
        run(module, "ip", "-n", sw, "link", "set", peer, "master", bridge, "up")
        run(module, "ip", "-n", ns, "addr", "add", p["address"], "dev", "eth0")
        run(module, "ip", "-n", ns, "link", "set", "eth0", "up")
        run(module, "ip", "-n", ns, "link", "set", "lo", "up")
        changed = True
    changed |= ensure_routes(module, ns, p["routes"])
    init_pid_file = os.path.join(home, "init.pid")
    init = alive(init_pid_file)
    if init is None:
        init = boot(module, p, ns, home)
        changed = True
    sshd_pid_file = os.path.join(home, "lab", "sshd.pid")
    if alive(sshd_pid_file) is None:
        write_sshd_files(p, home)
        enter = ["nsenter", "--target", str(init), "--mount", "--uts", "--net", "--root", "--wd", "--"]
        run(module, *enter, "/usr/sbin/sshd", "-f", f"{LAB_DIR}/sshd_config")
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
    for pid_file in ("lab/sshd.pid", "init.pid"):
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
        "authorized_key": {"type": "path"}, "site": {"type": "str"},
        "hide": {"type": "list", "elements": "path", "default": []},
        "routes": {"type": "list", "elements": "dict", "default": [],
                   "options": {"dest": {"type": "str", "required": True}, "via": {"type": "str", "required": True}}},
        "kind": {"type": "str", "choices": ["routed", "nat"]}, "wan": {"type": "str"}, "lan": {"type": "str"},
        "management": {"type": "str"},
        "state": {"type": "str", "default": "present",
                  "choices": ["present", "absent", "switch", "switch_absent", "router", "router_absent"]}},
        required_if=[("state", "present", ("name", "address", "authorized_key")), ("state", "absent", ("name",)),
                     ("state", "switch", ("gateway",)), ("state", "router", ("name", "kind", "wan", "lan")),
                     ("state", "router_absent", ("name",))])
    p = module.params
    if p["state"] == "router":
        module.exit_json(changed=ensure_router(module, p), netns=router_netns(p["prefix"], p["name"]))
    if p["state"] == "router_absent":
        module.exit_json(changed=remove_router(module, p))
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
