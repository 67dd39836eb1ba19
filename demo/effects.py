"""What the demo does to the lab and reads from it: thin effects, no verdicts.

Owns the I/O of the demo: running playbooks (`ansible-playbook` with the demo lab's inventory and
variables), pinging inside a lab host's network namespace, the chat daemons' HTTP API, reading
every lab host's identity and logs, drawing the as-built diagram with `meshctl diagram`. Each
function reports what it saw; `demo.steps` judges it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from demo.timeline import Log

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtualenv the demo runs in, with ansible-playbook and meshctl
NOT_PROGRAM_LOGS = frozenset({"supervisord"})  # the supervisor's own lines are not meshvpn events


@dataclass(frozen=True)
class Lab:
    """Where the demo's lab lives: its own namespaces, subnet, files and inventory."""

    prefix: str
    subnet: str
    lab_dir: Path
    inventory: Path

    @property
    def extra_vars(self) -> list[str]:
        values = {"meshvpn_lab_prefix": self.prefix, "meshvpn_lab_subnet": self.subnet,
                  "meshvpn_lab_dir": str(self.lab_dir), "meshvpn_lab_inventory": str(self.inventory)}
        return [arg for key, value in values.items() for arg in ("-e", f"{key}={value}")]

    def host_dir(self, host: str) -> Path:
        return self.lab_dir / "hosts" / host


def playbook(lab: Lab, playbooks: list[str], log: Path, *extra: str, inventory: bool = True) -> tuple[int, str]:
    """Run playbooks in one ansible-playbook (facts one sets are seen by the next); output into `log`."""
    argv = [str(BIN / "ansible-playbook"), *(["-i", str(lab.inventory)] if inventory else []),
            *lab.extra_vars, *extra, *playbooks]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0"}
    log.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    log.write_text(" ".join(argv) + "\n\n" + done.stdout)
    return done.returncode, done.stdout


def groups(lab: Lab) -> dict[str, dict[str, dict]]:
    """The inventory's groups: group -> host -> its variables."""
    data = yaml.safe_load(lab.inventory.read_text())
    children = data["all"]["children"]
    return {name: dict((group or {}).get("hosts") or {}) for name, group in children.items()}


def identity(lab: Lab, host: str) -> dict:
    return json.loads((lab.host_dir(host) / "var_lib_meshvpn" / "node.json").read_text())


def ping(lab: Lab, source: str, mesh_ip: str) -> bool:
    """Whether `mesh_ip` answers a ping from inside `source` (at least one of five)."""
    done = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-{source}", "ping", "-q", "-n", "-c", "5",
                           "-i", "0.2", "-W", "1", mesh_ip], capture_output=True, check=False)
    return done.returncode == 0


def pings(lab: Lab, pairs: list[tuple[str, str]], mesh_ips: dict[str, str]) -> dict[tuple[str, str], bool]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda pair: ping(lab, pair[0], mesh_ips[pair[1]]), pairs)
        return dict(zip(pairs, answers, strict=True))


class Chat:
    """One node's chat daemon, through its HTTP API (the UI's), with the token it keeps for its CLI."""

    def __init__(self, lab: Lab, host: str):
        pointer = json.loads((lab.host_dir(host) / "var_lib_meshvpn" / "chat.json").read_text())
        self.host = host
        self.client = httpx.Client(base_url=pointer["ui"], headers={"X-Meshchat-Token": pointer["token"]},
                                   timeout=60)

    def send(self, peer_ip: str, text: str) -> tuple[int, object]:
        answer = self.client.post("/api/messages", json={"peer": peer_ip, "text": text})
        return answer.status_code, _json(answer)

    def history(self, peer_ip: str) -> object:
        return _json(self.client.get("/api/messages", params={"peer": peer_ip}))


def _json(answer: httpx.Response) -> object:
    try:
        return answer.json()
    except ValueError:
        return answer.text


def logs(lab: Lab) -> list[Log]:
    """Every program log of every lab host (`var_log_meshvpn/PROGRAM.log`, rotated ones too)."""
    found = []
    for path in sorted(lab.lab_dir.glob("hosts/*/var_log_meshvpn/*.log*")):
        program = path.name.split(".log")[0]
        if program not in NOT_PROGRAM_LOGS:
            found.append(Log(path.parts[-3], program, path.read_text(errors="replace")))
    return found


def diagram(lab: Lab, control: str, address: str, output: Path) -> subprocess.CompletedProcess:
    """`meshctl diagram -o OUTPUT` against the lab's control plane. meshctl uses an admin token file
    only as its owner, who cannot enter the root-only lab directory: it runs as that owner in a
    private directory holding copies of the token and the CA."""
    home = lab.host_dir(control)
    token = home / "var_lib_meshvpn-control" / "admin.token"
    owner = token.stat()
    with tempfile.TemporaryDirectory(prefix="meshvpn-demo-") as work:
        place = Path(work)
        shutil.copyfile(token, place / "admin.token")
        shutil.copyfile(home / "etc_meshvpn" / "tls" / "ca.crt", place / "ca.crt")
        for path in (place, place / "admin.token", place / "ca.crt"):
            os.chown(path, owner.st_uid, owner.st_gid)
        (place / "admin.token").chmod(0o600)
        done = subprocess.run(["setpriv", f"--reuid={owner.st_uid}", f"--regid={owner.st_gid}", "--clear-groups",
                               str(BIN / "meshctl"), "diagram", "--control", f"https://{address}:8700",
                               "--ca", str(place / "ca.crt"), "--admin-token-file", str(place / "admin.token"),
                               "-o", str(place / "asbuilt")], capture_output=True, text=True, check=False)
        for suffix in (".dot", ".svg"):
            if (place / f"asbuilt{suffix}").exists():
                shutil.copyfile(place / f"asbuilt{suffix}", output.with_suffix(suffix))
        return done
