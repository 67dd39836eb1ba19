"""Running the control plane under gunicorn with uvicorn workers.

Owns process-level start-up: migrations and the admin token are prepared once
in the master before workers fork; each worker builds its own app and runtime.
"""
from __future__ import annotations

from gunicorn.app.base import BaseApplication

from control import db, tokens
from control.app import create_app
from control.config import Config
from control.events import emit, setup_logging


class ControlServer(BaseApplication):
    def __init__(self, config: Config):
        self.config = config
        super().__init__()

    def load_config(self):
        options = {
            "bind": self.config.listen,
            "workers": self.config.workers,
            "worker_class": "uvicorn_worker.UvicornWorker",
            "graceful_timeout": 5,
            "timeout": 120,
            "keepalive": 75,
            "proc_name": "meshvpn-control",
            "accesslog": None,
            "control_socket": str(self.config.state_dir / "gunicorn.ctl"),
        }
        if self.config.tls_cert:
            options.update(certfile=str(self.config.tls_cert), keyfile=str(self.config.tls_key))
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        db.connect(self.config.db_url)
        return create_app(self.config)


def prepare(config: Config) -> None:
    """Create the state dir, migrate the store and make sure the admin token exists."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(config.log_level)
    db.connect(config.db_url)
    applied = db.migrate()
    if applied:
        emit("store_migrated", reason="start", migrations=applied)
    tokens.ensure_admin_token(config.admin_token_path)
    db.db.close()


def serve(config: Config) -> None:
    prepare(config)
    emit("control_starting", listen=config.listen, workers=config.workers,
         store="postgresql" if config.db_url.startswith("postgres") else "sqlite", reason="serve")
    ControlServer(config).run()
