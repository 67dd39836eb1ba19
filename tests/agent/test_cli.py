"""`meshagent` commands without a kernel: `down` removes the interface the agent used, `status` reads
the files when no agent runs, `up` refuses bad settings before doing anything."""
import json

import msgspec
import pytest

from agent import apply, cli
from agent import local_api as status
from agent.statedir import StateDir
from meshcommon.contract.version import VERSION
from tests.agent.data import identity


@pytest.fixture
def removed(monkeypatch) -> list[str]:
    """The interfaces `down` removes (recorded, not removed)."""
    names: list[str] = []
    monkeypatch.setattr(apply, "remove_interface", lambda interface: names.append(interface) or True)
    monkeypatch.setattr(status.wg, "peer_stats", lambda interface: ())
    return names


@pytest.mark.parametrize("stored, flag, expected", [("mesh7", None, "mesh7"), (None, None, "mesh0"),
                                                    ("mesh7", "wg3", "wg3")])
def test_down_removes_the_interface_the_agent_was_started_with(tmp_path, removed, capsys, stored, flag, expected):
    state = StateDir(tmp_path)
    if stored:
        state.save_interface(stored)
    state.save_conf("[Interface]\n")
    argv = ["down", "--state-dir", str(tmp_path)] + (["--interface", flag] if flag else [])
    assert cli.main(argv) == 0
    assert removed == [expected] and not state.conf_path.exists()
    assert capsys.readouterr().out == f"interface {expected} removed\n"


def test_down_leave_forgets_the_identity_even_when_deregistration_fails_and_says_so(tmp_path, removed, capsys):
    state = StateDir(tmp_path)
    state.save_identity(msgspec.structs.replace(identity(), control_urls=[]))  # nowhere to deregister
    assert cli.main(["down", "--state-dir", str(tmp_path), "--leave"]) == 1
    assert state.identity() is None and removed == ["mesh0"]
    assert "could not deregister" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [False, True])
def test_down_leave_trusts_the_control_planes_ca_from_the_settings_file_or_the_flag(tmp_path, removed, monkeypatch,
                                                                                      flag):
    """Found by `make demo`: over TLS (every deployment) `down --leave` could not deregister, its
    client trusting only the system's CAs."""
    from agent import client as client_module
    used: list[str | None] = []

    class Recording(client_module.ControlClient):
        def __init__(self, urls, ca=None, transport=None):
            used.append(ca)
            super().__init__(urls, ca=None, transport=transport)

        async def leave(self, node_id, node_token):
            return None

    monkeypatch.setattr(client_module, "ControlClient", Recording)
    state = StateDir(tmp_path / "state")
    state.save_identity(identity())
    settings = tmp_path / "agent.yml"
    settings.write_text("ca: /etc/meshvpn/control-ca.crt\n")
    argv = ["down", "--state-dir", str(state.root), "--leave", "--config", str(settings)]
    assert cli.main(argv + (["--ca", "/elsewhere/ca.crt"] if flag else [])) == 0
    assert used == ["/elsewhere/ca.crt" if flag else "/etc/meshvpn/control-ca.crt"]
    with pytest.raises(SystemExit, match="unknown settings"):
        settings.write_text("cert_authority: x\n")
        state.save_identity(identity())
        cli.main(argv)


def test_status_without_an_agent_says_so_exits_3_and_reads_the_state_directory(tmp_path, removed, capsys):
    StateDir(tmp_path).save_identity(identity())
    assert cli.main(["status", "--state-dir", str(tmp_path), "--json"]) == cli.EXIT_NOT_RUNNING == 3
    printed = capsys.readouterr()
    shown = json.loads(printed.out)
    assert (shown["node_id"], shown["control"], shown["mesh_ip"]) == ("me", "unknown", "100.64.0.1")
    assert printed.err == (f"meshagent status: no agent answers on {tmp_path / 'agent.sock'}; "
                           f"showing what {tmp_path} says\n")
    assert cli.main(["status", "--state-dir", str(tmp_path)]) == 3
    assert "control: unknown (agent not running)" in capsys.readouterr().out
    assert cli.main(["status", "--state-dir", str(tmp_path), "--metrics"]) == 3
    assert "meshvpn_agent_up 0.0\n" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"meshagent {VERSION}\n"


@pytest.mark.parametrize("argv, message", [(["up", "--name", "n1"], "give --control"),
                                           (["up", "--control", "http://c", "--name", "n1", "--listen-port", "0"],
                                            "1-65535"),
                                           (["up", "--control", "http://c", "--name", "n1", "--metrics-listen",
                                             "everywhere:1"], "--metrics-listen")])
def test_up_refuses_bad_settings(argv, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)
