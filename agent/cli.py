"""`meshagent`: run the node agent (`up`), show this node's view (`status`), remove it (`down`).

Owns the command line: its flags, what each command prints and its exit code (`status`: 3 when
no agent answers). Must not hold the agent's logic: settings come from `settings`, the status from
`status`/`status_view`, its metrics from `metrics`, the work from the agent.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from agent.core.settings import (
    DEFAULT_INTERFACE,
    DEFAULT_LISTEN_PORT,
    DEFAULT_STATE_DIR,
    LOG_LEVEL_VARIABLE,
    BadSettings,
    log_level,
    read_file,
    settings_from,
)
from meshcommon.contract.version import VERSION
from meshcommon.contract.wire import AgentStatus
from meshcommon.plumbing.events import emit, setup_logging

EXIT_NOT_RUNNING = 3  # `meshagent status`: no agent answers (the LSB's "program is not running")


def cmd_up(args) -> int:
    from agent import local_api
    from agent.agent import Agent
    try:
        settings = settings_from(read_file(args.config), vars(args))
    except BadSettings as exc:
        raise SystemExit(str(exc)) from None
    setup_logging(log_level(args.log_level, os.environ))

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        emit("agent_started", node=settings.name, interface=settings.interface, controls=list(settings.control_urls),
             reason="up")
        agent = None
        server = None
        metrics = None
        try:
            agent = await Agent.start(settings, stop)
            server = asyncio.create_task(local_api.serve(agent, str(agent.state.socket_path)))
            if settings.metrics_listen is not None:
                metrics = await serve_metrics(agent, *settings.metrics_listen)
            await agent.run()
        finally:
            if metrics is not None:
                metrics.close()
            if server is not None:
                server.cancel()
                await asyncio.gather(server, return_exceptions=True)
            emit("agent_stopped", node=settings.name, reason="signal",
                 revision=agent.reconciler.applied_revision if agent else None)

    asyncio.run(main())
    return 0


async def serve_metrics(agent, host: str, port: int) -> asyncio.Server:
    from agent import local_api
    try:
        server = await local_api.serve_metrics(agent, host, port)
    except OSError as exc:
        raise SystemExit(f"meshagent up: --metrics-listen {host}:{port}: {exc.strerror or exc}") from None
    emit("metrics_listening", node=agent.settings.name, address=f"{host}:{port}", reason="metrics_listen")
    return server


def running_status(state_dir: Path, timeout: float = 5.0) -> AgentStatus | None:
    """The running agent's status, or None when no agent answers on its socket."""
    import httpx

    from meshcommon.plumbing import local_api_client as agent_api
    try:
        return agent_api.fetch_status(agent_api.socket_path(state_dir), timeout=timeout)
    except (httpx.HTTPError, OSError, ValueError):
        return None


def cmd_status(args) -> int:
    import msgspec

    from agent.local_api import offline_status
    status = running_status(args.state_dir)
    code = 0
    if status is None:
        from meshcommon.plumbing import local_api_client as agent_api
        print(f"meshagent status: no agent answers on {agent_api.socket_path(args.state_dir)}; "
              f"showing what {args.state_dir} says", file=sys.stderr)
        status, code = offline_status(args.state_dir), EXIT_NOT_RUNNING
    if args.metrics:
        from agent.core.metrics import render
        print(render(status), end="")
    elif args.json:
        print(json.dumps(msgspec.to_builtins(status), indent=2))
    else:
        show(status)
    return code


def show(status: AgentStatus) -> None:
    since = status.unreachable_since
    control = status.control + (" (agent not running)" if status.control == "unknown" else "") + (
        f" since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else "")
    print(f"node {status.name} ({status.node_id})  mesh IP {status.mesh_ip}  "
          f"revision {status.revision} applied {status.applied_revision}  control: {control}")
    for peer in status.peers:
        age = peer.latest_handshake_age
        path = f"{peer.current_endpoint} ({peer.endpoint_source})" if peer.current_endpoint else "-"
        print(f"  {peer.name or '?':20} {peer.mesh_ip:15} {'online ' if peer.online else 'offline'} "
              f"handshake {'-' if age is None else f'{age:.0f}s ago':>10}  rx {peer.rx:>10} tx {peer.tx:>10}  "
              f"endpoint {path}")


def cmd_down(args) -> int:
    from agent.apply import remove_interface
    from agent.statedir import StateDir
    state = StateDir(args.state_dir)
    if running_status(state.root, timeout=2) is not None:
        raise SystemExit("meshagent down: the agent is running; stop it first (SIGTERM), or it re-creates the mesh")
    identity = state.identity()
    deregistered = True
    if args.leave and identity:
        from agent.client import ControlClient
        from agent.core.settings import BadSettings, read_file
        try:  # the control plane's CA, as `up` was given it: the agent's settings file, or --ca
            ca = args.ca or read_file(args.config).get("ca")
        except (OSError, BadSettings) as exc:
            raise SystemExit(f"meshagent down: {exc}") from None

        async def leave():
            client = ControlClient(identity.control_urls, ca=ca)
            try:
                await client.leave(identity.node_id, identity.node_token)
            finally:
                await client.close()
        try:
            asyncio.run(leave())
            print(f"left the mesh: node {identity.node_id} deregistered")
        except Exception as exc:  # the interface still goes; say why the deregistration did not
            deregistered = False
            print(f"meshagent down: could not deregister: {exc}; the node stays in the registry, offline, until an "
                  f"admin removes it (meshctl node rm {identity.node_id})", file=sys.stderr)
        state.forget_identity()
    interface = args.interface or state.interface() or DEFAULT_INTERFACE
    removed = remove_interface(interface)
    state.conf_path.unlink(missing_ok=True)
    print(f"interface {interface} {'removed' if removed else 'was not there'}")
    return 0 if deregistered else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="meshagent", description="meshvpn node agent")
    top.add_argument("--version", action="version", version=f"meshagent {VERSION}")
    sub = top.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the agent in the foreground until SIGTERM")
    up.add_argument("--config", type=Path, help="YAML settings (same names as the flags, with _)")
    up.add_argument("--control", action="append", default=[], help="control plane URL; repeat for failover")
    up.add_argument("--join-token-file", help="join token, used once to enroll")
    up.add_argument("--name", help="advisory display name of this node")
    up.add_argument("--interface", help=f"WireGuard interface ({DEFAULT_INTERFACE})")
    up.add_argument("--state-dir", help=f"identity, credentials, cached netmap ({DEFAULT_STATE_DIR})")
    up.add_argument("--endpoint",
                    help="IPv4:PORT or [IPv6]:PORT peers reach us at (default: detected toward the control plane)")
    up.add_argument("--listen-port", type=int, help=f"WireGuard UDP port ({DEFAULT_LISTEN_PORT})")
    up.add_argument("--backend", choices=["auto", "kernel", "userspace"])
    up.add_argument("--ca", help="CA bundle to verify the control plane's TLS certificate")
    up.add_argument("--log-level", help=f"INFO unless ${LOG_LEVEL_VARIABLE} says otherwise")
    up.add_argument("--metrics-listen", metavar="[HOST:]PORT",
                    help="serve Prometheus metrics at /metrics (off by default; PORT alone: on 127.0.0.1)")
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="this node's view of the mesh (exit 3 when no agent answers)")
    status.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    shown = status.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true")
    shown.add_argument("--metrics", action="store_true", help="as Prometheus text")
    status.set_defaults(func=cmd_status)
    down = sub.add_parser("down", help="remove the interface the agent used (and with --leave deregister)")
    down.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    down.add_argument("--interface", help="the interface to remove (default: the one the agent was started with)")
    down.add_argument("--leave", action="store_true", help="deregister from the control plane first")
    down.add_argument("--config", type=Path, help="the agent's settings file, for the control plane's CA (`ca`)")
    down.add_argument("--ca", help="the control plane's CA certificate (default: the settings file's, or the system's)")
    down.set_defaults(func=cmd_down)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)
