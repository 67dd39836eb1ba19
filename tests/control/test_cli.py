"""`meshctl` argument parsing and refusals, in this process: nothing is served or spawned."""
import argparse

import pytest

from control.cli import admin_client
from control.cli import meshctl as cli
from meshcommon.contract.version import VERSION


@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0),
                                           ("2d", 172800.0), ("0.5h", 1800.0)])
def test_durations_take_a_unit(text, seconds):
    assert cli.duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "", "h", "0", "-5m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.duration(text)


def test_bad_arguments_are_clear_errors(capsys, monkeypatch):
    with pytest.raises(SystemExit) as bad:
        cli.main(["token", "create", "--ttl", "soon", "--control", "http://127.0.0.1:1", "--admin-token-file", "x"])
    assert bad.value.code == cli.EXIT_USAGE and "invalid duration" in capsys.readouterr().err
    monkeypatch.delenv("MESHCTL_CONTROL", raising=False)
    monkeypatch.delenv("MESHCTL_ADMIN_TOKEN_FILE", raising=False)
    with pytest.raises(SystemExit) as no_control:
        cli.main(["nodes"])
    assert isinstance(no_control.value.code, str) and "--control" in no_control.value.code


def test_serve_rejects_a_bad_cidr(tmp_path, capsys):
    assert cli.main(["serve", "--state-dir", str(tmp_path), "--cidr", "10.0.0.1/8"]) == cli.EXIT_USAGE
    assert "invalid mesh CIDR" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


def test_every_command_has_its_function():
    parser = cli.parser()
    for argv in (["serve"], ["migrate"], ["nodes"], ["node", "show", "n1"], ["node", "rm", "n1"],
                 ["node", "rename", "n1", "gw"], ["token", "create"], ["token", "list"], ["token", "revoke", "t1"],
                 ["watch"]):
        assert callable(parser.parse_args(argv).func), argv


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"meshctl {VERSION}\n"


@pytest.mark.parametrize("flag, variable, used", [(None, "/env/ca.pem", "/env/ca.pem"),
                                                  ("/flag/ca.pem", "/env/ca.pem", "/flag/ca.pem"),
                                                  (None, None, None)])
def test_the_ca_comes_from_the_flag_else_meshctl_ca(tmp_path, monkeypatch, flag, variable, used):
    """As --control and --admin-token-file: the flag wins over its MESHCTL_ variable."""
    token = tmp_path / "admin.token"
    token.write_text("mva_x\n")
    token.chmod(0o600)
    if variable is None:
        monkeypatch.delenv("MESHCTL_CA", raising=False)
    else:
        monkeypatch.setenv("MESHCTL_CA", variable)
    ours, opened, real = ("/env/ca.pem", "/flag/ca.pem"), [], admin_client.ssl.create_default_context

    def spy(cafile=None, **kwargs):  # httpx makes its own default context too
        opened.append(cafile)
        return real() if cafile in ours else real(cafile=cafile, **kwargs)
    monkeypatch.setattr(admin_client.ssl, "create_default_context", spy)
    args = cli.parser().parse_args(["nodes", "--control", "https://127.0.0.1:1", "--admin-token-file", str(token)]
                                   + (["--ca", flag] if flag else []))
    admin_client.Admin(args)
    assert [cafile for cafile in opened if cafile in ours] == ([used] if used else [])
