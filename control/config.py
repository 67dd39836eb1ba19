"""Control-plane configuration: defaults, then a YAML file, then MESHVPN_* environment, then flags.

Owns the names and meaning of every setting and their validation; a bad value
is a clear error at start, never a crash later.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from control.rules import ipam, reflexive

HTTP_PARSERS = ("auto", "h11", "httptools")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/meshvpn-control")
    listen: str = "127.0.0.1:8700"
    db: str | None = None  # database URL; None means SQLite in state_dir
    cidr: str = "100.64.0.0/10"
    heartbeat_interval: float = 2.0
    offline_after: float = 6.0
    sweep_interval: float = 0.5
    heartbeat_flush_interval: float = 0.25
    poll_interval: float = 0.05  # revision poll on SQLite with several workers (revision_poll_interval)
    max_wait: float = 60.0
    max_body: int = 1 << 20
    header_timeout: float = 10.0  # seconds for a request's line and headers, from its first byte or connect
    body_timeout: float = 10.0  # seconds to read a request body
    keepalive_timeout: float = 75.0  # seconds an idle kept-alive connection stays open
    max_connections: int = 24576  # open connections per worker (10,000 agents hold ~2 each); below LimitNOFILE
    max_connections_per_address: int = 2048  # of those, from one client address (a NATed site shares one)
    stream_keepalive: float = 15.0  # seconds between keepalive comments on an idle netmap stream
    write_timeout: float = 30.0  # seconds a response may wait for a client that stopped reading
    workers: int = 1
    http_parser: str = "auto"  # h11, httptools, or auto: httptools when installed (half the CPU per request)
    event_loop: str = "auto"  # asyncio, uvloop, or auto: uvloop when installed and without TLS (see httpserver)
    db_threads: int = 4
    tls_cert: Path | None = None
    tls_key: Path | None = None
    admin_token_file: Path | None = None
    log_level: str = "INFO"
    # Comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed
    # (for the reflexive endpoint); empty: the connection's peer is the node, whatever it claims.
    trusted_proxies: str = ""

    @property
    def db_url(self) -> str:
        return self.db or sqlite_url(self.state_dir / "control.db")

    @property
    def admin_token_path(self) -> Path:
        return self.admin_token_file or self.state_dir / "admin.token"

    def validated(self) -> Config:
        ipam.parse_prefix(self.cidr)
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if self.offline_after <= self.heartbeat_interval:
            raise ValueError("offline_after must be longer than heartbeat_interval")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        _, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"listen address {self.listen!r} must be HOST:PORT")
        reflexive.parse_networks(self.trusted_proxies)
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.http_parser not in HTTP_PARSERS:
            raise ValueError(f"http_parser must be one of {', '.join(HTTP_PARSERS)}")
        if self.event_loop not in EVENT_LOOPS:
            raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}")
        for name in ("header_timeout", "body_timeout", "keepalive_timeout", "max_connections",
                     "max_connections_per_address", "write_timeout", "stream_keepalive"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        return self


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    if value is None:
        return None
    kind = FIELDS[name].type
    try:
        if "Path" in kind:
            return Path(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("int"):
            return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"setting {name}: {value!r} is not a valid {kind}") from None
    return str(value)


def load(file: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Build the config from the layers, later ones winning; unknown keys are an error."""
    values: dict[str, Any] = {}
    if file is not None:
        data = yaml.safe_load(Path(file).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{file}: expected a mapping of settings")
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ValueError(f"{file}: unknown settings {sorted(unknown)}")
        values.update(data)
    environment = os.environ if env is None else env
    for name in FIELDS:
        key = "MESHVPN_CONTROL_" + name.upper()
        if key in environment:
            values[name] = environment[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**{k: _coerce(k, v) for k, v in values.items()}).validated()
