"""Running the control plane under gunicorn with uvicorn workers.

Owns process-level start-up: migrations and the admin token are prepared once
in the master before workers fork; each worker builds its own app and runtime.
Start-up also keeps secrets at rest private: a 0700 state dir, a umask of 077
for everything the process creates, 0600 SQLite files, a private admin token.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import peewee
from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from control.api.app import create_app
from control.config import Config
from control.rules import tokens
from control.store import db
from meshcommon.plumbing.events import EventFormatter, emit, host_name, setup_logging
from meshcommon.plumbing.files import private_dir


class GunicornLogger(glogging.Logger):
    """gunicorn's logger writing through meshvpn's formatter: its lines, and uvicorn's (the worker
    gives uvicorn's loggers gunicorn's handlers), are JSON lines like every other."""

    def _set_handler(self, log, output, fmt, stream=None):
        super()._set_handler(log, output, EventFormatter(host_name()), stream)


class ControlServer(BaseApplication):
    def __init__(self, config: Config):
        self.config = config
        super().__init__()

    def load_config(self):
        options = {
            "bind": self.config.listen,
            "workers": self.config.workers,
            "worker_class": "control.serve.connections.ControlWorker",  # keep-alive, header timeout, connection cap
            "graceful_timeout": 5,
            "timeout": 120,
            "proc_name": "meshvpn-control",
            "accesslog": None,
            "logger_class": "control.serve.process.GunicornLogger",
            "control_socket": str(self.config.state_dir / "gunicorn.ctl"),
        }
        if self.config.tls_cert:
            options.update(certfile=str(self.config.tls_cert), keyfile=str(self.config.tls_key))
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        db.connect(self.config.db_url)
        return create_app(self.config)


def protect_sqlite_files(database: peewee.Database) -> None:
    """Make an SQLite store and its -wal and -shm files 0600, before SQLite opens them.

    SQLite gives the -wal and -shm files it creates the mode of the database file.
    """
    if not isinstance(database, peewee.SqliteDatabase):
        return
    main = Path(database.database)
    for path in (main, main.with_name(main.name + "-wal"), main.with_name(main.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)


def prepare(config: Config) -> None:
    """Create the state dir, check the admin token (creating it on first start), migrate the store.

    Raises tokens.UnsafeSecretFile, before touching the store, when others could read or replace the admin token.
    """
    os.umask(0o077)  # the store, tokens and sockets this process creates are for its user alone
    private_dir(config.state_dir)
    setup_logging(config.log_level)
    tokens.ensure_admin_token(config.admin_token_path)
    protect_sqlite_files(db.connect(config.db_url))
    applied = db.migrate()
    if applied:
        emit("store_migrated", reason="start", migrations=applied)
    db.db.close()


def serve(config: Config) -> None:
    prepare(config)
    emit("control_starting", listen=config.listen, workers=config.workers,
         store="postgresql" if config.db_url.startswith("postgres") else "sqlite", reason="serve")
    ControlServer(config).run()
