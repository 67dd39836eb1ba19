"""Settings: flags over the file over the defaults, and clear refusals."""
from pathlib import Path

import pytest

from agent.core.settings import (
    DEFAULT_STATE_DIR,
    AgentSettings,
    BadSettings,
    log_level,
    metrics_address,
    parse_file,
    read_file,
    settings_from,
)

FLAGS = {"control": [], "join_token_file": None, "name": None, "interface": None, "state_dir": None,
         "endpoint": None, "listen_port": None, "backend": None, "ca": None, "metrics_listen": None}


def flags(**given) -> dict:
    return {**FLAGS, **given}


def test_defaults():
    assert settings_from({}, flags(control=["http://c"], name="n1")) == AgentSettings(
        control_urls=("http://c",), join_token_file=None, name="n1", interface="mesh0",
        state_dir=DEFAULT_STATE_DIR, endpoint=None, listen_port=51820, backend="auto", ca=None)


def test_flags_win_over_the_file():
    file = {"control": "http://file", "name": "file", "interface": "wg9", "listen_port": 5000,
            "join_token_file": "/etc/token", "state_dir": "/srv/mesh", "backend": "kernel", "ca": "/ca.pem"}
    got = settings_from(file, flags(control=["http://a", "http://b"], listen_port=6000))
    assert got.control_urls == ("http://a", "http://b") and got.listen_port == 6000 and got.name == "file"
    assert (got.interface, got.join_token_file, got.state_dir, got.backend, got.ca) == (
        "wg9", Path("/etc/token"), Path("/srv/mesh"), "kernel", "/ca.pem")
    assert settings_from({"control": ["http://x"], "name": "f"}, flags()).control_urls == ("http://x",)


@pytest.mark.parametrize("file, given, message", [
    ({}, {"name": "n"}, "give --control"),
    ({"control": "http://c"}, {}, "--name"),
    ({}, {"control": ["http://c"], "name": "n", "listen_port": 0}, "1-65535"),
    ({"listen_port": "many"}, {"control": ["http://c"], "name": "n"}, "1-65535"),
    ({"listen_port": 70000}, {"control": ["http://c"], "name": "n"}, "1-65535"),
])
def test_refusals(file, given, message):
    with pytest.raises(BadSettings, match=message):
        settings_from(file, flags(**given))


def test_the_file_is_a_mapping_of_known_names(tmp_path):
    assert parse_file("", "f.yml") == {} and read_file(None) == {}
    with pytest.raises(BadSettings, match="expected a mapping"):
        parse_file("- a\n- b\n", "f.yml")
    with pytest.raises(BadSettings, match=r"unknown settings in f.yml: \['colour'\]"):
        parse_file("name: n\ncolour: blue\n", "f.yml")
    path = tmp_path / "agent.yml"
    path.write_text("control: http://c\nname: n1\n")
    assert read_file(path) == {"control": "http://c", "name": "n1"}


def test_log_level_from_the_flag_then_the_environment():
    assert log_level("DEBUG", {"MESHAGENT_LOG_LEVEL": "ERROR"}) == "DEBUG"
    assert log_level(None, {"MESHAGENT_LOG_LEVEL": "ERROR"}) == "ERROR"
    assert log_level(None, {}) == "INFO"


@pytest.mark.parametrize("text, address", [("9586", ("127.0.0.1", 9586)), (":9586", ("127.0.0.1", 9586)),
                                           ("127.0.0.1:9586", ("127.0.0.1", 9586)), ("[::1]:9586", ("::1", 9586)),
                                           ("100.64.0.1:9586", ("100.64.0.1", 9586))])
def test_metrics_listen_is_loopback_unless_an_address_is_written_out(text, address):
    assert metrics_address(text) == address
    assert settings_from({"metrics_listen": text}, flags(control=["http://c"], name="n")).metrics_listen == address


@pytest.mark.parametrize("text", ["", "0", "70000", "host.example:9586", "127.0.0.1:", "[::1]", "a:b"])
def test_metrics_listen_refusals(text):
    with pytest.raises(BadSettings, match="--metrics-listen"):
        metrics_address(text)


def test_metrics_are_off_by_default():
    assert settings_from({}, flags(control=["http://c"], name="n")).metrics_listen is None
