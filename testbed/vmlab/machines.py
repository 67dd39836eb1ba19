"""The VM lab's machines: QEMU guests on a bridge of this machine, each booted from a copy-on-write
overlay of the cached image (testbed/vmlab/image.py).

Software emulation (`-accel tcg`, CPU model `qemu64`): /dev/kvm exists here but nested KVM does not work.
Layout, for a lab `prefix` on `subnet` (three octets): a bridge `<prefix>0` holding
`<subnet>.1` (this machine: SSH to the VMs, and the package repository their apt reads, served
on port REPOSITORY_PORT), one tap `<prefix>t<i>` per VM on it, VM i at `<subnet>.<10 + i>`. No VM
has a default route and this machine forwards nothing of the bridge's: the lab's addresses are
all the VMs reach and all that reaches them.

Under the lab folder, per VM: its overlay, its console log (appended across boots: the lab's
timeline), its QEMU monitor socket (`quit` powers it off at once) and its pid file.
Owns the bridge, the taps, the repository server and the QEMU processes; touches nothing else.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.vmlab.image import Image

MEMORY_MB = 448
# The plain x86-64 CPU, not `max`: with AVX2 offered, the guest's glibc takes its AVX2 string and memory
# functions, which software emulation runs slower than SSE2 ones (Python in the guest ~10 % faster).
CPU = "qemu64"
REPOSITORY_PORT = 8790
MONITOR_PROMPT = b"(qemu) "
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]


@dataclass(frozen=True)
class Machine:
    name: str
    group: str  # meshvpn_control, meshvpn_nodes or meshvpn_db
    index: int  # 0 for the first VM

    def address(self, subnet: str) -> str:
        return f"{subnet}.{10 + self.index}"


@dataclass(frozen=True)
class Lab:
    prefix: str
    subnet: str  # three octets
    folder: Path
    image: Image

    @property
    def bridge(self) -> str:
        return f"{self.prefix}0"

    @property
    def host(self) -> str:
        return f"{self.subnet}.1"

    @property
    def key(self) -> Path:
        return self.folder / "ssh" / "id_ed25519"

    def tap(self, machine: Machine) -> str:
        return f"{self.prefix}t{machine.index}"

    def home(self, machine: Machine) -> Path:
        return self.folder / machine.name

    # -- the network

    def network_up(self) -> None:
        if not Path(f"/sys/class/net/{self.bridge}").exists():
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "address", "add", f"{self.host}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        self._serve_repository()

    def _serve_repository(self) -> None:
        pid_file = self.folder / "repository.pid"
        if pid_file.exists() and alive(int(pid_file.read_text()), str(self.image.repository)):
            return
        log = open(self.folder / "repository.log", "ab")  # noqa: SIM115 (the child keeps it)
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(REPOSITORY_PORT), "--bind", self.host,
                                   "--directory", str(self.image.repository)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        pid_file.write_text(str(server.pid))

    def network_down(self) -> None:
        pid_file = self.folder / "repository.pid"
        if pid_file.exists():
            stop(int(pid_file.read_text()), "http.server")
            pid_file.unlink()
        for tap in Path("/sys/class/net").glob(f"{self.prefix}t*"):
            subprocess.run(["ip", "link", "del", tap.name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)

    # -- the machines

    def create(self, machine: Machine) -> None:
        home = self.home(machine)
        home.mkdir(parents=True, exist_ok=True)
        (home / "machine.json").write_text(json.dumps(asdict(machine)))
        overlay = home / "disk.qcow2"
        if not overlay.exists():
            run("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.disk), "-F", "raw", str(overlay))

    def running(self, machine: Machine) -> bool:
        pid_file = self.home(machine) / "qemu.pid"
        return pid_file.exists() and alive(int(pid_file.read_text().strip() or 0), str(self.home(machine)))

    def start(self, machine: Machine) -> None:
        """Boot `machine` (it must be created); returns at once, see `wait_ssh`."""
        if self.running(machine):
            return
        home, tap = self.home(machine), self.tap(machine)
        if not Path(f"/sys/class/net/{tap}").exists():
            run("ip", "tuntap", "add", "dev", tap, "mode", "tap")
            run("ip", "link", "set", tap, "master", self.bridge)
        run("ip", "link", "set", tap, "up")
        mac = f"52:54:00:6d:{machine.index // 256:02x}:{machine.index % 256:02x}"
        cmdline = (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet mitigations=off meshlab.name={machine.name} "
                   f"meshlab.addr={machine.address(self.subnet)}/24 "
                   f"meshlab.repo=http://{self.host}:{REPOSITORY_PORT}/")
        with open(home / "console.log", "ab") as console:
            console.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} boot\n".encode())
        run("qemu-system-x86_64", "-name", machine.name, "-accel", "tcg", "-cpu", CPU, "-m", str(MEMORY_MB),
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", f"file,id=console,path={home / 'console.log'},append=on", "-serial", "chardev:console",
            "-monitor", f"unix:{home / 'monitor.sock'},server,nowait",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd), "-append", cmdline,
            "-drive", f"file={home / 'disk.qcow2'},if=virtio,format=qcow2,cache=unsafe",
            "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net0,mac={mac}",
            "-device", "virtio-rng-pci",
            "-pidfile", str(home / "qemu.pid"), "-daemonize")

    def power_off(self, machine: Machine) -> None:
        """Pull the plug: QEMU quits at once (its monitor's `quit`), the guest shuts nothing down. If
        QEMU has not quit within a second, SIGKILL ends it: the same for the guest, and said on stderr."""
        self.monitor(machine, "quit")
        deadline = time.monotonic() + 1
        while self.running(machine) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running(machine):
            print(f"{machine.name}: QEMU did not quit from its monitor; killed", file=sys.stderr, flush=True)
            with contextlib.suppress(ProcessLookupError, ValueError, OSError):
                pid = int((self.home(machine) / "qemu.pid").read_text())
                if alive(pid, str(self.home(machine))):  # still ours
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.running(machine) and time.monotonic() < deadline:
                time.sleep(0.05)

    def monitor(self, machine: Machine, command: str) -> bytes:
        """Run one command on QEMU's human monitor; what it printed, up to its next prompt or the
        monitor's end (`quit`). The monitor reads input once it has printed its prompt: a command sent
        before, on a socket closed at once, is lost (such a `quit` did nothing)."""
        answer = b""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.home(machine) / "monitor.sock"))
            greeting = b""
            while not greeting.endswith(MONITOR_PROMPT):
                chunk = sock.recv(4096)
                if not chunk:
                    return answer
                greeting += chunk
            sock.sendall(command.encode() + b"\n")
            while not answer.endswith(MONITOR_PROMPT):
                chunk = sock.recv(4096)
                if not chunk:  # QEMU closed it: it quit
                    break
                answer += chunk
        return answer

    def ssh(self, machine: Machine, *command: str, timeout: float = 60, check: bool = True) -> str:
        done = subprocess.run(["ssh", *SSH_OPTIONS, "-i", str(self.key), f"root@{machine.address(self.subnet)}",
                               *command], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{machine.name}: {' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def wait_ssh(self, machine: Machine, timeout: float = 300) -> float:
        """Seconds until `machine` answers SSH (it was just started)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(subprocess.TimeoutExpired):
                if subprocess.run(["ssh", *SSH_OPTIONS, "-i", str(self.key), f"root@{machine.address(self.subnet)}",
                                   "true"], capture_output=True, timeout=20).returncode == 0:
                    return time.monotonic() - started
            time.sleep(2)
        raise TimeoutError(f"{machine.name} did not answer SSH within {timeout:.0f} s; see "
                           f"{self.home(machine) / 'console.log'}")

    def machines(self) -> list[Machine]:
        return sorted((Machine(**json.loads(path.read_text())) for path in self.folder.glob("*/machine.json")),
                      key=lambda m: m.index)

    def destroy(self) -> None:
        for machine in self.machines():
            if self.running(machine):
                self.power_off(machine)
        self.network_down()


def run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def alive(pid: int, marker: str) -> bool:
    """Whether `pid` runs and is ours: its command line names `marker` (a pid file outlives a
    reboot, and its number may belong to another process by then)."""
    if pid <= 0:
        return False
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(pid: int, marker: str) -> None:
    if not alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
