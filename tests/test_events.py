"""meshcommon.plumbing.events: the one log format of every process, fit for merging hosts' logs by `ts`."""
import io
import json
import logging
import re
from datetime import datetime

import pytest

from meshcommon.plumbing import events

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def lines(monkeypatch):
    """What the root logger writes once set up, as parsed JSON lines."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv(events.HOST_VARIABLE, "node7")
    stream = io.StringIO()
    events.setup_logging("INFO", stream)
    return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


def test_an_event_line_starts_with_ts_host_level_event_then_its_fields(lines):
    events.emit("node_renamed", node="n1", node_name="gw", revision=4)
    [line] = lines()
    assert list(line) == ["ts", "host", "level", "event", "node", "node_name", "revision"]
    assert (line["host"], line["level"], line["event"], line["node"], line["revision"]) == (
        "node7", "INFO", "node_renamed", "n1", 4)
    assert TS.match(line["ts"]) and datetime.fromisoformat(line["ts"]).utcoffset().total_seconds() == 0


def test_fields_named_like_line_fields_or_record_attributes_keep_their_values(lines):
    events.emit("chat_received", host="elsewhere", ts=1, level="x", logger="y", message="m1", name="n")
    [line] = lines()
    assert (line["host"], line["event"]) == ("node7", "chat_received")
    assert {k: line[k] for k in ("host_", "ts_", "level_", "logger_", "message_", "name_")} == {
        "host_": "elsewhere", "ts_": 1, "level_": "x", "logger_": "y", "message_": "m1", "name_": "n"}


def test_library_lines_are_library_log_events_with_their_logger_and_message(lines):
    logging.getLogger("gunicorn.error").warning("Booting worker with pid: %d", 42)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42,
                                            extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        logging.getLogger("asyncio").exception("accept failed")
    gunicorn, uvicorn, failed = lines()
    assert {k: gunicorn[k] for k in ("host", "level", "event", "logger", "message")} == {
        "host": "node7", "level": "WARNING", "event": "library_log", "logger": "gunicorn.error",
        "message": "Booting worker with pid: 42"}
    assert "color_message" not in uvicorn and uvicorn["message"] == "Started server process [42]"
    assert failed["event"] == "library_log" and "Too many open files" in failed["exc_info"]


def test_the_host_is_the_host_name_unless_meshvpn_host_says_otherwise(monkeypatch):
    monkeypatch.setattr(events.socket, "gethostname", lambda: "box")
    assert events.host_name({}) == "box"
    assert events.host_name({"MESHVPN_HOST": ""}) == "box"
    assert events.host_name({"MESHVPN_HOST": "lab-n1"}) == "lab-n1"


def test_timestamps_sort_as_text_in_time_order():
    stamps = [events.iso_utc(t) for t in (0.5, 9.999999, 10.0, 1_790_000_000.123456)]
    assert stamps == sorted(stamps) and stamps[0] == "1970-01-01T00:00:00.500000Z"
