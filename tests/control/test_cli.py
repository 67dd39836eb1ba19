"""`meshctl` argument parsing and refusals, in this process: nothing is served or spawned."""
import argparse

import pytest

from control import cli


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
    for argv in (["serve"], ["migrate"], ["nodes"], ["node", "show", "n1"], ["node", "rm", "n1"], ["token", "create"],
                 ["token", "list"], ["token", "revoke", "t1"], ["watch"]):
        assert callable(parser.parse_args(argv).func), argv
