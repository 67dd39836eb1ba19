"""The VM lab's disk image: Debian bookworm as a cloud's stock image has it, built once and cached.

Built with debootstrap from the Debian mirror already configured in /etc/apt (no host name of a
registry is written here): minbase plus what a stock cloud image has (a kernel, systemd, OpenSSH,
Python 3, iproute2, ping, udev, kmod, sudo, nftables), and two pieces of the lab's own: its SSH key for
root, and a unit that sets each VM's name and underlay address from the kernel command line
(`meshlab.name=`, `meshlab.addr=`), so every VM boots the same image.

What the roles install on a stock host (`REPOSITORY`: python3-venv, python3-packaging,
python3-cryptography, wireguard-tools, and PostgreSQL and HAProxy for the other deployments) is
downloaded in the same build into a flat package repository beside the image (with python3-apt,
which Ansible's apt module installs first); the guests' apt reads it from the host, the only place
they can reach. The image itself does not have them: the roles must install them, as on an
operator's fresh VM.

Kept in the cache folder (MESHVPN_VM_CACHE, else /var/cache/meshvpn-vmlab), outside the checkout,
named by a key of the package lists and this file's text: a change to either builds a new one.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RELEASE = "bookworm"
STOCK = ("linux-image-amd64", "systemd-sysv", "openssh-server", "python3", "iproute2", "iputils-ping", "udev",
         "kmod", "sudo", "ca-certificates", "procps", "nftables")
REPOSITORY = ("python3-apt", "python3-venv", "python3-packaging", "python3-cryptography", "wireguard-tools",
              "postgresql", "python3-psycopg2", "haproxy", "libjemalloc2")
# Checks of the file system and backups of dpkg's database that run at every boot (timers that
# catch up on boot), and a console login prompt nobody reads.
BOOT_JOBS_MASKED = ("e2scrub_reap.service", "e2scrub_all.timer", "dpkg-db-backup.timer", "getty-static.service",
                    "getty@tty1.service")
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4", "virtio_net")  # the root on its disk; eth0 for the lab unit
IMAGE_SIZE = "3G"
KEEP = 2  # images kept in the cache: this one and the one before
NETWORK_UNIT = """[Unit]
Description=The lab's name and underlay address for this VM, from the kernel command line
DefaultDependencies=no
Before=network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/meshlab-net

[Install]
WantedBy=multi-user.target
"""
NETWORK_SCRIPT = """#!/bin/sh
# meshlab.name=NAME meshlab.addr=ADDRESS/PREFIX meshlab.repo=URL on the kernel command line: the
# VM's name, its underlay address (no default route: the lab's bridge is all a VM reaches) and the
# package repository its apt reads.
set -e
for word in $(cat /proc/cmdline); do
  case "$word" in
    meshlab.name=*) name=${word#meshlab.name=} ;;
    meshlab.addr=*) addr=${word#meshlab.addr=} ;;
    meshlab.repo=*) repo=${word#meshlab.repo=} ;;
  esac
done
if [ -n "$name" ]; then
  hostname "$name"
  echo "$name" >/etc/hostname
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >/etc/hosts
fi
ip link set lo up
ip link set eth0 up
[ -z "$addr" ] || ip address replace "$addr" dev eth0
[ -z "$repo" ] || echo "deb [trusted=yes] $repo ./" >/etc/apt/sources.list.d/meshlab.list
exit 0
"""


def cache_dir() -> Path:
    return Path(os.environ.get("MESHVPN_VM_CACHE", "/var/cache/meshvpn-vmlab"))


def key() -> str:
    """What the image is made of: its package lists and this file (the build's every step)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(" ".join(STOCK + REPOSITORY).encode())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Image:
    root: Path  # the cache folder of this key

    @property
    def disk(self) -> Path:
        return self.root / "disk.img"

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.img"

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def ready(self) -> bool:
        return (self.root / "built").exists()


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The URI of the Debian archive this machine's apt already uses for the release."""
    deb822 = sources / "sources.list.d" / "debian.sources"
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if RELEASE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    for listing in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]:
        if listing.exists():
            for line in listing.read_text().splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and RELEASE in words[2:3] and not words[1].startswith("["):
                    return words[1]
    raise RuntimeError(f"no Debian {RELEASE} source in {sources}: cannot build the VM image")


def ensure(log=print) -> Image:
    """The image of the current key, built first when it is not in the cache yet."""
    image = Image(cache_dir() / key())
    if image.ready:
        return image
    started = time.monotonic()
    build(image, log)
    (image.root / "built").write_text(f"{time.monotonic() - started:.0f}\n")
    log(f"vm image built in {time.monotonic() - started:.0f} s: {image.root}")
    prune(image.root.parent, keep=KEEP)
    return image


def prune(cache: Path, keep: int) -> None:
    """Remove all but the `keep` newest images of the cache, and never one a running VM or
    repository server of a lab still uses (its path is on their command lines)."""
    built = sorted((path for path in cache.iterdir() if (path / "built").exists()),
                   key=lambda path: (path / "built").stat().st_mtime, reverse=True)
    for old in built[keep:]:
        if not in_use(old):
            shutil.rmtree(old, ignore_errors=True)


def in_use(root: Path) -> bool:
    marker = str(root).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


def build(image: Image, log) -> None:
    shutil.rmtree(image.root, ignore_errors=True)
    image.root.mkdir(parents=True)
    tree = image.root / "tree"
    mirror = debian_mirror()
    log(f"debootstrap {RELEASE} from this machine's Debian source into {tree}")
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(STOCK)}", RELEASE, str(tree), mirror],
                   check=True, stdout=subprocess.DEVNULL)
    (tree / "etc/apt/sources.list").write_text(f"deb {mirror} {RELEASE} main\n")
    download(tree, image.repository)
    # The guests' apt reads the lab's repository only (written at boot with the host's address).
    (tree / "etc/apt/sources.list").write_text("")
    shutil.rmtree(tree / "var/lib/apt/lists", ignore_errors=True)
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True)
    configure(tree, image)
    shutil.copy(sorted((tree / "boot").glob("vmlinuz-*"))[-1], image.kernel)
    shutil.copy(sorted((tree / "boot").glob("initrd.img-*"))[-1], image.initrd)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "meshlab", "-d", str(tree), str(image.disk), IMAGE_SIZE],
                   check=True)
    shutil.rmtree(tree)


def download(tree: Path, repository: Path) -> None:
    """What the roles install, with what it needs that the image lacks, into a flat repository."""
    chroot = ["chroot", str(tree)]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*chroot, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*chroot, "apt-get", "install", "-qq", "--download-only", "--no-install-recommends",
                    *REPOSITORY], check=True, env=env, stdout=subprocess.DEVNULL)
    repository.mkdir(parents=True)
    for deb in (tree / "var/cache/apt/archives").glob("*.deb"):
        shutil.move(str(deb), repository / deb.name)
    index(repository)


def index(repository: Path) -> None:
    """Packages(.gz) and a Release file for a flat repository (`deb [trusted=yes] URL ./`)."""
    stanzas = []
    for deb in sorted(repository.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
        data = deb.read_bytes()
        stanzas.append(control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    (repository / "Packages").write_bytes(packages)
    (repository / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    lines = [f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}"
             for name, data in (("Packages", packages), ("Packages.gz", gzip.compress(packages, mtime=0)))]
    (repository / "Release").write_text("Origin: meshvpn-vmlab\nLabel: meshvpn-vmlab\nSuite: lab\nCodename: lab\n"
                                        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
                                        "Architectures: amd64 all\nSHA256:\n" + "\n".join(lines) + "\n")


def configure(tree: Path, image: Image) -> None:
    """The lab's SSH key for root, its address unit, and a machine id made at each VM's first boot."""
    image.ssh_key.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshvpn-vmlab", "-f", str(image.ssh_key)],
                   check=True)
    ssh = tree / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(image.ssh_key.with_suffix(".pub").read_text())
    (ssh / "authorized_keys").chmod(0o600)
    (tree / "usr/local/sbin/meshlab-net").write_text(NETWORK_SCRIPT)
    (tree / "usr/local/sbin/meshlab-net").chmod(0o755)
    (tree / "etc/systemd/system/meshlab-net.service").write_text(NETWORK_UNIT)
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "meshlab-net.service").symlink_to("/etc/systemd/system/meshlab-net.service")
    (tree / "etc/fstab").write_text("LABEL=meshlab / ext4 rw,relatime 0 1\n")
    (tree / "etc/machine-id").write_text("")
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (tree / "etc/hostname").write_text("meshlab\n")
    (tree / "etc/hosts").write_text("127.0.0.1 localhost\n")
    # The serial console is the VM's log: no login prompt on it, the kernel's and systemd's lines only.
    (tree / "etc/systemd/system/serial-getty@ttyS0.service").symlink_to("/dev/null")
    # Fast boots: no waiting for a network that the lab unit brings up itself, and no boot-time
    # jobs that only cost time under emulation (nothing the roles need or install).
    for unit in ("systemd-networkd-wait-online.service", *BOOT_JOBS_MASKED):
        (tree / "etc/systemd/system" / unit).symlink_to("/dev/null")
    # An initrd of the few modules a VM's root needs, not of most of the kernel's: it unpacks in
    # a fraction of the time.
    (tree / "etc/initramfs-tools/conf.d/meshlab").write_text("MODULES=list\n")
    (tree / "etc/initramfs-tools/modules").write_text("\n".join(INITRD_MODULES) + "\n")
    subprocess.run(["chroot", str(tree), "update-initramfs", "-u", "-k", "all"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
