"""`meshchat`: the daemon (`serve`) and a CLI for scripts and demos (`send`, `peers`, `history`).

Owns the command line: its arguments, starting the daemon's parts, and the CLI's calls to a
running daemon's API (found through the pointer file `serve` writes). Must not hold chat logic:
the CLI asks the daemon, as the browser does.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

from chat.guard import TOKEN_HEADER
from meshcommon.contract.terminal import visible
from meshcommon.contract.version import VERSION
from meshcommon.plumbing.events import emit, setup_logging

DEFAULT_STATE = Path("/var/lib/meshvpn")


def cmd_serve(args) -> int:
    import uvicorn

    from chat import guard, transport
    from chat.daemon import Chat, write_pointer
    from chat.store import Store
    from chat.web import create_app
    host, _, port = args.ui_listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise SystemExit("meshchat serve: --ui-listen must be HOST:PORT")
    if host in ("0.0.0.0", "::"):
        raise SystemExit("meshchat serve: --ui-listen needs the one address browsers use, not a wildcard: "
                         "the UI answers only requests for the address it listens on")
    setup_logging(args.log_level)
    store = Store(args.state_dir / "chat.db")
    store.fail_unfinished()
    chat = Chat(args.state_dir, store, args.port or transport.PORT)
    access = guard.access_for(host, int(port), guard.new_token())
    ui = f"http://{guard.authority(host, int(port))}"

    async def main():
        follower = asyncio.create_task(chat.follow())
        config = uvicorn.Config(create_app(chat, access), host=host, port=int(port), log_level="warning",
                                log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        write_pointer(args.state_dir, ui, access.token)
        emit("chat_started", ui=ui, reason="serve")
        try:
            await server.serve()
        finally:
            follower.cancel()
    asyncio.run(main())
    return 0


def read_pointer(args) -> tuple[str, str]:
    """The daemon's URL (`--ui` wins) and its API token, from what `serve` wrote into the state directory."""
    path = args.state_dir / "chat.json"
    try:
        pointer = json.loads(path.read_text())
    except PermissionError:
        raise SystemExit(f"meshchat: cannot read {path}: it holds the daemon's token, run as its user") from None
    except (OSError, ValueError):
        pointer = {}
    url = args.ui or pointer.get("ui")
    if not url:
        raise SystemExit(f"meshchat: no running daemon found in {args.state_dir} (start `meshchat serve`)")
    return url.rstrip("/"), pointer.get("token", "")


def call(args, method: str, path: str, **kwargs) -> httpx.Response:
    url, token = read_pointer(args)
    try:
        return httpx.request(method, url + path, headers={TOKEN_HEADER: token}, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        raise SystemExit(f"meshchat: the chat daemon is unreachable: {exc}") from None


def reason(answer: httpx.Response) -> str:
    try:
        return answer.json()["description"]
    except (ValueError, KeyError, TypeError):
        return answer.text


def answered(answer: httpx.Response) -> dict:
    if answer.status_code != 200:
        raise SystemExit(f"meshchat: {visible(reason(answer))}")
    return answer.json()


def cmd_send(args) -> int:
    answer = call(args, "POST", "/api/messages", json={"peer": args.mesh_ip, "text": args.text})
    if answer.status_code != 200:
        print(f"meshchat: {reason(answer)}", file=sys.stderr)
        return 2
    row = answer.json()
    if row["state"] == "delivered":
        print(f"delivered to {args.mesh_ip}")
        return 0
    print(f"not delivered to {args.mesh_ip}: {visible(row['reason'])}", file=sys.stderr)
    return 1


def cmd_peers(args) -> int:
    data = answered(call(args, "GET", "/api/state"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"this node: {visible(data.get('name'))} {visible(data.get('mesh_ip'))} (agent {visible(data.get('agent'))})")
    for peer in data["peers"]:
        print(f"  {visible(peer['name']):20} {visible(peer['mesh_ip']):15} {'online' if peer['online'] else 'offline'}")
    return 0


def cmd_history(args) -> int:
    messages = answered(call(args, "GET", "/api/messages", params={"peer": args.mesh_ip}))["messages"]
    for m in messages:
        arrow = "->" if m["direction"] == "out" else "<-"
        state = m["state"] + (f" ({m['reason']})" if m.get("reason") else "")
        print(f"{arrow} {visible(m['text'])}  [{visible(state)}]")  # a peer wrote it: no escapes pass
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="meshchat", description="peer-to-peer chat over the mesh")
    top.add_argument("--version", action="version", version=f"meshchat {VERSION}")
    top.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="the agent's state directory")
    top.add_argument("--ui", help="the daemon's URL (default: what `serve` wrote into the state directory)")
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--ui-listen", default="127.0.0.1:7080", help="browser UI address (127.0.0.1:7080)")
    serve.add_argument("--port", type=int, help="TCP port on the mesh IP (7000)")
    serve.add_argument("--log-level", default=os.environ.get("MESHCHAT_LOG_LEVEL", "INFO"))
    serve.set_defaults(func=cmd_serve)
    send = sub.add_parser("send", help="send a message; exit 0 only when the peer acknowledged it")
    send.add_argument("mesh_ip")
    send.add_argument("text")
    send.set_defaults(func=cmd_send)
    peers = sub.add_parser("peers", help="list peers")
    peers.add_argument("--json", action="store_true")
    peers.set_defaults(func=cmd_peers)
    history = sub.add_parser("history", help="conversation with a peer")
    history.add_argument("mesh_ip")
    history.set_defaults(func=cmd_history)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)
