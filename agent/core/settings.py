"""Settings of `meshagent up`: their names, defaults and checks, from a YAML file, flags and the environment.

Owns `AgentSettings` and how it is made: a flag given on the command line wins over the file's
value, which wins over the default. The checks are pure (`settings_from`); `read_file` is the one
read of a file. Must not import what talks to the system or the network.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_STATE_DIR = Path("/var/lib/meshvpn")
DEFAULT_INTERFACE = "mesh0"
DEFAULT_LISTEN_PORT = 51820
LOG_LEVEL_VARIABLE = "MESHAGENT_LOG_LEVEL"
FILE_KEYS = frozenset({"control", "join_token_file", "name", "interface", "state_dir", "endpoint", "listen_port",
                       "backend", "ca", "metrics_listen"})


class BadSettings(ValueError):
    """Settings the agent cannot start with; the message says which and why."""


@dataclass(frozen=True)
class AgentSettings:
    control_urls: tuple[str, ...]
    join_token_file: Path | None
    name: str
    interface: str = DEFAULT_INTERFACE
    state_dir: Path = DEFAULT_STATE_DIR
    endpoint: str | None = None
    listen_port: int = DEFAULT_LISTEN_PORT
    backend: str = "auto"
    ca: str | None = None
    metrics_listen: tuple[str, int] | None = None  # (host, port) to serve Prometheus metrics on; None: off


def parse_file(text: str, source: str) -> dict:
    """The settings a YAML document holds; only the names of FILE_KEYS are allowed."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise BadSettings(f"meshagent: {source}: expected a mapping")
    unknown = set(data) - FILE_KEYS
    if unknown:
        raise BadSettings(f"meshagent: unknown settings in {source}: {sorted(unknown)}")
    return data


def read_file(path: Path | None) -> dict:
    return {} if path is None else parse_file(path.read_text(), str(path))


def settings_from(file: Mapping, flags: Mapping) -> AgentSettings:
    """AgentSettings from the file's values and the flags (None or [] where a flag was not given)."""

    def pick(key, default=None):
        value = flags.get(key)
        return value if value not in (None, []) else file.get(key, default)

    controls = pick("control") or []
    controls = [controls] if isinstance(controls, str) else list(controls)
    name = pick("name")
    if not controls or not name:
        raise BadSettings("meshagent up: give --control URL (repeatable) and --name NAME")
    try:
        port = int(pick("listen_port", DEFAULT_LISTEN_PORT))
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise BadSettings("meshagent up: --listen-port must be 1-65535")
    token_file = pick("join_token_file")
    metrics = pick("metrics_listen")
    return AgentSettings(control_urls=tuple(controls), join_token_file=Path(token_file) if token_file else None,
                         name=name, interface=pick("interface", DEFAULT_INTERFACE),
                         state_dir=Path(pick("state_dir", DEFAULT_STATE_DIR)), endpoint=pick("endpoint"),
                         listen_port=port, backend=pick("backend", "auto"), ca=pick("ca"),
                         metrics_listen=None if metrics is None else metrics_address(str(metrics)))


def metrics_address(text: str) -> tuple[str, int]:
    """(host, port) of `--metrics-listen`: PORT or :PORT is loopback (127.0.0.1); another address
    only when written out (HOST:PORT, [IPv6]:PORT), as the metrics name every peer."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise BadSettings(f"meshagent up: --metrics-listen {text!r}: give PORT, IP:PORT or [IPv6]:PORT")
    return host, number


def log_level(flag: str | None, environ: Mapping[str, str]) -> str:
    return flag or environ.get(LOG_LEVEL_VARIABLE, "INFO")
