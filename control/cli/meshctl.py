"""`meshctl`: serve the control plane and administer the mesh from a shell.

Owns argument parsing and the commands. Admin commands speak the HTTP API with the admin token
(`admin_client.py`) and print through `console.py`, which keeps API data from driving the
terminal; nothing here touches the database except `serve` and `migrate`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from control.cli.admin_client import Admin
from control.cli.console import (
    duplicate_names,
    membership_changes,
    node_rows,
    pair_rows,
    print_json,
    print_table,
    safe,
    say,
    token_rows,
)
from control.cli.diagram import mesh_dot
from meshcommon.contract.version import VERSION

EXIT_USAGE, EXIT_FAILED = 2, 1


def duration(text: str) -> float:
    """Parse 90, 90s, 15m, 1h or 2d into seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 90s, 15m, 1h, 2d") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be positive")
    return seconds


# -- serve ------------------------------------------------------------------

def cmd_serve(args) -> int:
    from control import config as configuration
    try:
        cfg = configuration.load(args.config, listen=args.listen, state_dir=args.state_dir, db=args.db,
                                 cidr=args.cidr, heartbeat_interval=args.heartbeat_interval,
                                 offline_after=args.offline_after, workers=args.workers,
                                 tls_cert=args.tls_cert, tls_key=args.tls_key,
                                 admin_token_file=args.admin_token_file)
    except (ValueError, OSError) as exc:
        print(f"meshctl serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if cfg.workers > 1:  # must be set before prometheus_client is imported
        metrics_dir = cfg.state_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # holds secrets: see server.prepare
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from control.rules.tokens import UnsafeSecretFile
    from control.serve.process import prepare, serve
    try:
        if args.command == "migrate":
            prepare(cfg)
        else:
            serve(cfg)
    except UnsafeSecretFile as exc:
        print(f"meshctl {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# -- admin commands ---------------------------------------------------------

def cmd_nodes(args) -> int:
    data = Admin(args).request("GET", "/v1/nodes").json()
    if args.json:
        print_json(data)
        return 0
    print_table(["NAME", "MESH IP", "KEY", "ENDPOINT", "SEEN FROM", "STATE", "LAST SEEN", "APPLIED", "AGENT", "ID"],
                node_rows(data["nodes"], time.time()))
    say(f"revision {safe(data['revision'])}, {len(data['nodes'])} nodes")
    duplicates = duplicate_names(data["nodes"])
    if duplicates:  # names are advisory and may repeat: say which rows a name does not tell apart
        say(f"names used by more than one node (marked *): {safe(', '.join(duplicates))}; "
            "tell them apart by ID, or `meshctl node rename ID NEWNAME`")
    return 0


def cmd_health(args) -> int:
    """The pairs of nodes without a working tunnel now; exit 1 when there are any (for scripts)."""
    admin = Admin(args)
    data = admin.request("GET", "/v1/mesh/health").json()
    if args.json:
        print_json({"pairs": data["pairs"]})
    elif data["pairs"]:
        duplicates = frozenset(duplicate_names(admin.request("GET", "/v1/nodes").json()["nodes"]))
        print_table(["NODE A", "NODE B", "DOWN SINCE", "REASON", "REPORTED BY", "IDS"],
                    pair_rows(data["pairs"], time.time(), duplicates))
        say(f"revision {safe(data['revision'])}: {len(data['pairs'])} pairs without a working tunnel "
            f"(nothing received for {safe(data['bound'])} s)")
        if duplicates & {name for pair in data["pairs"] for name in pair["names"]}:
            say("names used by more than one node are marked *: tell them apart by IDS")
    else:
        say(f"revision {safe(data['revision'])}: every tunnel works")
    return EXIT_FAILED if data["pairs"] else 0


def cmd_diagram(args) -> int:
    """The running mesh as DOT (stdout), or DOT and SVG files with -o (the SVG needs Graphviz's `dot`)."""
    admin = Admin(args)
    nodes = admin.request("GET", "/v1/nodes").json()
    health = admin.request("GET", "/v1/mesh/health").json()
    text = mesh_dot(nodes["nodes"], health["pairs"], str(admin.http.base_url), nodes["revision"])
    if not args.output:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    out.with_suffix(".dot").write_text(text)
    dot = shutil.which("dot")
    if dot is None:
        say(f"wrote {safe(out.with_suffix('.dot'))}; no SVG: Graphviz's `dot` is not installed")
        return EXIT_FAILED
    subprocess.run([dot, "-Tsvg", "-o", str(out.with_suffix(".svg")), str(out.with_suffix(".dot"))],
                   check=True, timeout=120)
    say(f"wrote {safe(out.with_suffix('.dot'))} and {safe(out.with_suffix('.svg'))}")
    return 0


def cmd_node_show(args) -> int:
    print_json(Admin(args).request("GET", f"/v1/nodes/{args.node_id}").json())
    return 0


def cmd_node_rename(args) -> int:
    data = Admin(args).request("PATCH", f"/v1/nodes/{args.node_id}", json={"name": args.name}).json()
    say(f"renamed {safe(data['node_id'])} to {safe(data['name'])} at revision {safe(data['changed_revision'])}")
    return 0


def cmd_node_rm(args) -> int:
    data = Admin(args).request("DELETE", f"/v1/nodes/{args.node_id}").json()
    say(f"removed {safe(data['deleted'])} at revision {safe(data['revision'])}")
    return 0


def cmd_watch(args) -> int:
    admin = Admin(args)
    data = admin.request("GET", "/v1/nodes").json()
    known = {n["node_id"]: n for n in data["nodes"]}
    say(f"revision {safe(data['revision'])}: {len(known)} nodes, "
        f"{sum(n['online'] for n in known.values())} online")
    revision = data["revision"]
    deadline = time.monotonic() + args.duration if args.duration else None
    while deadline is None or time.monotonic() < deadline:
        wait = 30.0 if deadline is None else max(0.1, min(30.0, deadline - time.monotonic()))
        response = admin.request("GET", "/v1/nodes", params={"since": revision, "wait": wait})
        if response.status_code == 304:
            continue
        data = response.json()
        current = {n["node_id"]: n for n in data["nodes"]}
        stamp = time.strftime("%H:%M:%S")
        for line in membership_changes(known, current):
            say(f"{stamp} r{safe(data['revision'])} {safe(line)}")
        known, revision = current, data["revision"]
    return 0


def cmd_token_create(args) -> int:
    body = {"reusable": args.reusable, "ttl_seconds": None if args.no_expiry else args.ttl,
            "description": args.description}
    say(safe(Admin(args).request("POST", "/v1/join-tokens", json=body).json()["token"]))
    return 0


def cmd_token_list(args) -> int:
    tokens = Admin(args).request("GET", "/v1/join-tokens").json()["join_tokens"]
    if args.json:
        print_json(tokens)
        return 0
    print_table(["ID", "STATE", "REUSABLE", "USES", "EXPIRES", "DESCRIPTION"], token_rows(tokens))
    return 0


def cmd_token_revoke(args) -> int:
    data = Admin(args).request("DELETE", f"/v1/join-tokens/{args.token_id}").json()
    say(f"revoked {safe(data['id'])}")
    return 0


# -- parser -------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="meshctl", description="meshvpn control plane and admin CLI")
    top.add_argument("--version", action="version", version=f"meshctl {VERSION}")
    sub = top.add_subparsers(dest="command", required=True)
    add_serve_commands(sub)
    add_admin_commands(sub)
    return top


def add_serve_commands(sub) -> None:
    for name, help_text in (("serve", "run the control plane (gunicorn + uvicorn workers)"),
                            ("migrate", "apply database migrations and create the admin token, then exit")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, help="YAML settings file")
        p.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8700)")
        p.add_argument("--state-dir", type=Path, help="state directory (SQLite, admin.token)")
        p.add_argument("--db", help="database URL, e.g. postgresql://user:pw@host/db (default SQLite)")
        p.add_argument("--cidr", help="mesh prefix (default 100.64.0.0/10)")
        p.add_argument("--heartbeat-interval", type=float, help="seconds between agent heartbeats (2)")
        p.add_argument("--offline-after", type=float, help="seconds without heartbeat before offline (6)")
        p.add_argument("--workers", type=int, help="gunicorn worker processes (1)")
        p.add_argument("--tls-cert", type=Path)
        p.add_argument("--tls-key", type=Path)
        p.add_argument("--admin-token-file", type=Path, help="default STATE_DIR/admin.token")
        p.set_defaults(func=cmd_serve)


def admin_parser(parent, name: str, **kwargs) -> argparse.ArgumentParser:
    """A command that speaks the API: it takes where the control plane is and the admin token."""
    p = parent.add_parser(name, **kwargs)
    p.add_argument("--control", help="control plane URL (MESHCTL_CONTROL)")
    p.add_argument("--admin-token-file", help="admin token file (MESHCTL_ADMIN_TOKEN_FILE)")
    p.add_argument("--ca", help="CA bundle to verify the control plane's TLS certificate (MESHCTL_CA)")
    return p


def add_admin_commands(sub) -> None:
    p = admin_parser(sub, "nodes", help="list nodes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_nodes)

    p = admin_parser(sub, "health", help="pairs of nodes without a working tunnel (exit 1 if any)")
    p.add_argument("--json", action="store_true", help='print {"pairs": [...]} ([] on a healthy mesh)')
    p.set_defaults(func=cmd_health)

    p = admin_parser(sub, "diagram", help="draw the running mesh (nodes, the control plane, tunnels and their health)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="write PATH.dot and PATH.svg instead of printing DOT")
    p.set_defaults(func=cmd_diagram)

    node = sub.add_parser("node", help="one node").add_subparsers(dest="action", required=True)
    p = admin_parser(node, "show", help="show a node")
    p.add_argument("node_id")
    p.set_defaults(func=cmd_node_show)
    p = admin_parser(node, "rename", help="give a node a new name (kept through its re-registrations)")
    p.add_argument("node_id")
    p.add_argument("name", help="1-63 of letters, digits, -, _, .")
    p.set_defaults(func=cmd_node_rename)
    p = admin_parser(node, "rm", help="remove a node from the mesh")
    p.add_argument("node_id")
    p.set_defaults(func=cmd_node_rm)

    add_token_commands(sub)
    p = admin_parser(sub, "watch", help="stream membership changes")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(func=cmd_watch)


def add_token_commands(sub) -> None:
    token = sub.add_parser("token", help="join tokens").add_subparsers(dest="action", required=True)
    p = admin_parser(token, "create", help="create a join token; prints it alone on stdout")
    p.add_argument("--reusable", action="store_true", help="allow many nodes to join with it")
    p.add_argument("--ttl", type=duration, default=3600.0, help="lifetime, e.g. 15m, 1h, 7d (default 1h)")
    p.add_argument("--no-expiry", action="store_true", help="never expires (until revoked)")
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_token_create)
    p = admin_parser(token, "list", help="list join tokens")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token_list)
    p = admin_parser(token, "revoke", help="revoke a join token")
    p.add_argument("token_id")
    p.set_defaults(func=cmd_token_revoke)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


def serve_main() -> int:
    return main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
