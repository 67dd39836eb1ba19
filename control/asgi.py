"""ASGI entry point for gunicorn/uvicorn: `gunicorn -k uvicorn_worker.UvicornWorker control.asgi:app`.

Owns building the app from the environment alone. Configuration comes from MESHVPN_CONTROL_*
variables (and MESHVPN_CONTROL_CONFIG, a YAML file). Run `meshctl migrate` first. Prefer
`meshctl serve`: it also migrates, checks file modes and runs `control.serve.connections.ControlWorker`,
whose header/body/idle timeouts and connection cap a plain uvicorn worker does not have.
"""
import os
from pathlib import Path

from control import config
from control.api.app import create_app
from control.store.db import connect
from meshcommon.plumbing.events import setup_logging

_file = os.environ.get("MESHVPN_CONTROL_CONFIG")
_config = config.load(Path(_file) if _file is not None else None)
setup_logging(_config.log_level)
connect(_config.db_url)
app = create_app(_config)
