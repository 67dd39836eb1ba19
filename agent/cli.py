"""`meshagent`: run the node agent (`up`), show this node's view (`status`), remove it (`down`)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from meshcommon.events import emit, setup_logging

DEFAULT_STATE = Path("/var/lib/meshvpn")


def load_yaml(path: Path | None) -> dict:
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"meshagent: {path}: expected a mapping")
    return data


def cmd_up(args) -> int:
    from agent import status
    from agent.loop import Agent, Settings
    file = load_yaml(args.config)
    allowed = {"control", "join_token_file", "name", "interface", "state_dir", "endpoint", "listen_port", "backend",
               "ca"}
    unknown = set(file) - allowed
    if unknown:
        raise SystemExit(f"meshagent: unknown settings in {args.config}: {sorted(unknown)}")

    def pick(key, default=None):
        value = getattr(args, key, None)
        return value if value not in (None, []) else file.get(key, default)

    controls = pick("control") or []
    controls = [controls] if isinstance(controls, str) else list(controls)
    name = pick("name")
    if not controls or not name:
        raise SystemExit("meshagent up: give --control URL (repeatable) and --name NAME")
    port = int(pick("listen_port", 51820))
    if not 1 <= port <= 65535:
        raise SystemExit("meshagent up: --listen-port must be 1-65535")
    token_file = pick("join_token_file")
    settings = Settings(control_urls=controls, join_token_file=Path(token_file) if token_file else None, name=name,
                        interface=pick("interface", "mesh0"), state_dir=Path(pick("state_dir", DEFAULT_STATE)),
                        endpoint=pick("endpoint"), listen_port=port, backend=pick("backend", "auto"),
                        ca=pick("ca"))
    setup_logging(args.log_level)

    async def main():
        agent = Agent(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        server = asyncio.create_task(status.serve(agent, str(agent.state.socket_path)))
        emit("agent_started", node=settings.name, interface=settings.interface, controls=controls, reason="up")
        try:
            await agent.run()
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
            emit("agent_stopped", node=settings.name, reason="signal", revision=agent.applied_revision)

    asyncio.run(main())
    return 0


def offline_status(state_dir: Path) -> dict:
    """What the state directory says when no agent answers on its socket."""
    from agent import wg
    from agent.state import StateDir
    state = StateDir(state_dir)
    node, cached = state.node() or {}, state.netmap() or {}
    header, entries = cached.get("header", {}), cached.get("entries", {})
    return {"node_id": node.get("node_id"), "name": (header.get("self") or {}).get("name"),
            "mesh_ip": node.get("mesh_ip"), "revision": header.get("revision"), "applied_revision": None,
            "control": "unknown (agent not running)",
            "peers": [{"node_id": p.get("node_id"), "name": p.get("name"), "mesh_ip": p.get("mesh_ip"),
                       "public_key": p.get("public_key"), "online": p.get("online"), "latest_handshake": None,
                       "rx": 0, "tx": 0} for p in entries.values()],
            "wg_available": wg.userspace_available()}


def cmd_status(args) -> int:
    import httpx
    import msgspec

    from meshcommon import agent_api
    try:
        data = msgspec.to_builtins(agent_api.fetch_status(agent_api.socket_path(args.state_dir)))
    except (httpx.HTTPError, OSError, ValueError):
        data = offline_status(args.state_dir)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    since = data.get("unreachable_since")
    control = data["control"] + (f" since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else "")
    print(f"node {data.get('name')} ({data.get('node_id')})  mesh IP {data.get('mesh_ip')}  "
          f"revision {data.get('revision')} applied {data.get('applied_revision')}  control: {control}")
    for peer in data["peers"]:
        age = peer.get("latest_handshake_age")
        print(f"  {peer['name'] or '?':20} {peer['mesh_ip']:15} {'online ' if peer['online'] else 'offline'} "
              f"handshake {'-' if age is None else f'{age:.0f}s ago':>10}  rx {peer['rx']:>10} tx {peer['tx']:>10}")
    return 0


def cmd_down(args) -> int:
    import httpx

    from agent.apply import remove_interface
    from agent.state import StateDir
    from meshcommon import agent_api
    state = StateDir(args.state_dir)
    try:
        agent_api.fetch_status(state.socket_path, timeout=2)
        raise SystemExit("meshagent down: the agent is running; stop it first (SIGTERM), or it re-creates the mesh")
    except (httpx.HTTPError, OSError, ValueError):
        pass
    node = state.node()
    if args.leave and node:
        from agent.client import ControlClient

        async def leave():
            client = ControlClient(node.get("control_urls") or [])
            try:
                await client.leave(node["node_id"], node["node_token"])
            finally:
                await client.close()
        try:
            asyncio.run(leave())
            print(f"left the mesh: node {node['node_id']} deregistered")
        except Exception as exc:  # the interface still goes; say why the deregistration did not
            print(f"meshagent down: could not deregister: {exc}", file=sys.stderr)
        state.forget_node()
    interface = args.interface or (node or {}).get("interface") or "mesh0"
    removed = remove_interface(interface)
    state.conf_path.unlink(missing_ok=True)
    print(f"interface {interface} {'removed' if removed else 'was not there'}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="meshagent", description="meshvpn node agent")
    sub = top.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the agent in the foreground until SIGTERM")
    up.add_argument("--config", type=Path, help="YAML settings (same names as the flags, with _)")
    up.add_argument("--control", action="append", default=[], help="control plane URL; repeat for failover")
    up.add_argument("--join-token-file", help="join token, used once to enroll")
    up.add_argument("--name", help="advisory display name of this node")
    up.add_argument("--interface", help="WireGuard interface (mesh0)")
    up.add_argument("--state-dir", help=f"identity, credentials, cached netmap ({DEFAULT_STATE})")
    up.add_argument("--endpoint", help="IPv4:PORT or [IPv6]:PORT peers reach us at (default: detected toward the control plane)")
    up.add_argument("--listen-port", type=int, help="WireGuard UDP port (51820)")
    up.add_argument("--backend", choices=["auto", "kernel", "userspace"])
    up.add_argument("--ca", help="CA bundle to verify the control plane's TLS certificate")
    up.add_argument("--log-level", default=os.environ.get("MESHAGENT_LOG_LEVEL", "INFO"))
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="this node's view of the mesh")
    status.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    down = sub.add_parser("down", help="remove the interface (and with --leave deregister)")
    down.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    down.add_argument("--interface")
    down.add_argument("--leave", action="store_true")
    down.set_defaults(func=cmd_down)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
