"""The systemd units the roles install on real hosts (no systemd runs here: checked offline).

Rendered from roles/meshvpn_common's one description of each program, as the role renders them;
`systemd-analyze verify` must accept each without a warning, and `systemd-analyze security` must
rate each one's exposure low (the agent keeps only CAP_NET_ADMIN/CAP_NET_RAW, the control plane,
the HAProxy in front of it and chat no capability at all, everything but their own state read-only).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = ("meshvpn-control", "meshvpn-tls-proxy", "meshagent", "meshchat")
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed (scripts/install-system-packages)")


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("units")
    venv = Path(sys.executable).parent.parent  # commands must exist for `verify`: this virtualenv's
    done = subprocess.run([str(venv / "bin" / "ansible-playbook"), str(REPO / "tests/deploy/data/render_units.yml"),
                           "-e", f"repo={REPO}", "-e", f"out={out}", "-e", f"venv={venv}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.parametrize("program", PROGRAMS)
def test_each_unit_is_valid_without_a_warning(units, program):
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / f"{program}.service")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stdout + done.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_each_unit_exposes_little(units, program):
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(units / f"{program}.service")],
                          capture_output=True, text=True, timeout=60)
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr).group(1))
    print(f"{program}: exposure {level}")
    assert level <= 3.0


def test_the_hardening_fits_each_program(units):
    text = {program: (units / f"{program}.service").read_text() for program in PROGRAMS}
    assert "CapabilityBoundingSet=\n" in text["meshvpn-control"] and "CapabilityBoundingSet=\n" in text["meshchat"]
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n" in text["meshagent"]
    assert "KillMode=process" in text["meshagent"], "wireguard-go must outlive a stopped agent"
    assert "DeviceAllow=/dev/net/tun rw" in text["meshagent"] and "RuntimeDirectoryPreserve=yes" in text["meshagent"]
    assert "LimitNOFILE=65536" in text["meshvpn-control"]
    assert "User=meshvpn\nGroup=meshvpn\n" in text["meshvpn-control"], "the control plane runs as its own user"
    assert "ReadWritePaths=/var/lib/meshvpn-control\n" in text["meshvpn-control"]
    proxy = text["meshvpn-tls-proxy"]  # HAProxy in front: its own user, nothing writable
    assert "User=haproxy\nGroup=haproxy\n" in proxy and "CapabilityBoundingSet=\n" in proxy
    assert "ReadWritePaths=\n" in proxy and "LimitNOFILE=65536" in proxy
    assert 'Environment="LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"\n' in proxy
    assert "Environment=" not in text["meshvpn-control"]
    for unit in text.values():
        assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit


def test_a_bad_unit_is_caught(units, tmp_path):
    """The check above can fail: a misspelt directive is reported."""
    bad = tmp_path / "bad.service"
    bad.write_text((units / "meshagent.service").read_text().replace("UMask=0077", "UMask=0077\nProtectSystm=yes"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert "ProtectSystm" in done.stderr
