"""A real `meshctl serve` (gunicorn master, two uvicorn workers): every line it writes, its own and
gunicorn's and uvicorn's, is one JSON object with an ISO-8601 UTC `ts`, the `host` and an `event`."""
import json
import re

from testbed.control_process import ControlProcess

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_every_line_of_the_control_plane_is_a_json_event(tmp_path):
    proc = ControlProcess(tmp_path / "state", workers=2)
    proc.env["MESHVPN_HOST"] = "control-7"
    proc.start()
    try:
        proc.join_token()
    finally:
        proc.stop()
    lines = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.strip()]
    assert lines and all(TS.match(line["ts"]) and line["host"] == "control-7" and line["event"] for line in lines)
    assert [line["ts"] for line in lines if line["event"] == "control_starting"]
    assert {line["event"] for line in lines} >= {"store_migrated", "control_starting", "token_created",
                                                 "control_draining", "library_log"}
    loggers = {line["logger"] for line in lines if line["event"] == "library_log"}
    assert {"gunicorn.error", "uvicorn.error"} <= loggers
