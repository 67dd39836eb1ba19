"""chat.cli: its arguments in-process, then a real `meshchat serve` driven by the `meshchat` CLI,
which finds the daemon and its token in the pointer file."""
from __future__ import annotations

import json
import signal
import subprocess

import httpx
import pytest

from chat import cli
from chat.daemon import write_pointer
from meshcommon.contract.version import VERSION
from testbed.meshlab import MESHCHAT, wait_for
from testbed.pg import free_port

PEER = "100.64.0.2"


@pytest.mark.parametrize("listen, reason", [("0.0.0.0:7080", "wildcard"), ("[::]:7080", "wildcard"),
                                            ("127.0.0.1", "HOST:PORT"), (":7080", "HOST:PORT"),
                                            ("127.0.0.1:http", "HOST:PORT")])
def test_serve_refuses_a_ui_address_browsers_cannot_use(tmp_path, listen, reason):
    with pytest.raises(SystemExit, match=reason):
        cli.main(["--state-dir", str(tmp_path), "serve", "--ui-listen", listen])
    assert not (tmp_path / "chat.json").exists()


def test_commands_need_their_arguments(capsys):
    for argv in ([], ["send", PEER], ["history"], ["bogus"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2
    assert "usage: meshchat" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"meshchat {VERSION}\n"


def test_without_a_running_daemon_the_cli_says_how_to_start_one(tmp_path):
    with pytest.raises(SystemExit, match="start `meshchat serve`"):
        cli.main(["--state-dir", str(tmp_path), "peers"])


def test_the_pointer_file_gives_the_daemon_url_and_token_and_ui_wins(tmp_path):
    write_pointer(tmp_path, "http://127.0.0.1:7080/", "t0ken")
    args = cli.parser().parse_args(["--state-dir", str(tmp_path), "peers"])
    assert cli.read_pointer(args) == ("http://127.0.0.1:7080", "t0ken")
    args = cli.parser().parse_args(["--state-dir", str(tmp_path), "--ui", "http://10.0.0.1:7080", "peers"])
    assert cli.read_pointer(args) == ("http://10.0.0.1:7080", "t0ken")


def test_an_unreachable_daemon_is_reported_not_a_traceback(tmp_path):
    write_pointer(tmp_path, f"http://127.0.0.1:{free_port()}", "t0ken")
    with pytest.raises(SystemExit, match="the chat daemon is unreachable"):
        cli.main(["--state-dir", str(tmp_path), "history", PEER])


# -- a real daemon and its CLI ------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path):
    port = free_port()
    with open(tmp_path / "chat.log", "wb") as log:
        proc = subprocess.Popen([MESHCHAT, "--state-dir", str(tmp_path), "serve", "--ui-listen", f"127.0.0.1:{port}",
                                 "--port", str(free_port())], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "chat.json").exists() and ui_answers(port), 15, what="meshchat serve")
        yield tmp_path, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def ui_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def meshchat(state_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MESHCHAT, "--state-dir", str(state_dir), *args], capture_output=True, text=True,
                          timeout=30)


@pytest.mark.slow
def test_the_cli_finds_the_daemon_and_its_token_through_the_pointer_file(daemon):
    state_dir, ui = daemon
    token = json.loads((state_dir / "chat.json").read_text())["token"]
    assert len(token) >= 43 and token in httpx.get(ui).text

    peers = meshchat(state_dir, "peers", "--json")
    assert peers.returncode == 0 and json.loads(peers.stdout)["agent"] == "unreachable"
    sent = meshchat(state_dir, "send", PEER, "hello")  # past the guard: refused by the daemon, not by it
    assert sent.returncode == 2 and "not a peer" in sent.stderr, sent.stderr
    assert meshchat(state_dir, "history", PEER).returncode == 0

    assert httpx.post(ui + "/api/messages", json={"peer": PEER, "text": "x"}).status_code == 403
    assert httpx.get(ui + "/api/state", headers={"Host": "evil.example"}).status_code == 421
    logged = [json.loads(line) for line in (state_dir / "chat.log").read_text().splitlines()]
    assert logged and all({"ts", "host", "event"} <= set(line) for line in logged)
    assert "chat_started" in {line["event"] for line in logged}


def test_history_shows_a_peers_terminal_escapes_as_text(monkeypatch, capsys, tmp_path):
    hostile = ("\x1b]0;owned\x07"  # set the window title
               "\x1b[2K\rforged line\n"  # erase the line, write another
               "\x1b]52;c;cm0gLXJmIH4=\x07\x9b")  # write the clipboard; a C1 CSI
    messages = [{"direction": "in", "text": hostile, "state": "received"},
                {"direction": "out", "text": "ok", "state": "failed", "reason": "peer\x1b[31m offline"}]
    monkeypatch.setattr(cli, "call", lambda *args, **kwargs: httpx.Response(200, json={"messages": messages}))
    assert cli.main(["--state-dir", str(tmp_path), "history", PEER]) == 0
    out = capsys.readouterr().out
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f for c in out)
    assert out.count("\n") == 2 and "\\x1b]52;c;" in out and "forged line" in out
