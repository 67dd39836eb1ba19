"""Structured logging: one JSON line per state change.

Owns the log format shared by every meshvpn process: `event` names what
happened, the other fields say to what (node, token), why (reason) and at which
revision. Never log a secret: tokens are referred to by id only.
"""
from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

log = logging.getLogger("meshvpn")


# Attributes of logging.LogRecord: an extra field by one of these names would make logging raise.
RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def emit(event: str, **fields) -> None:
    log.info(event, extra={f"{key}_" if key in RESERVED else key: value for key, value in fields.items()})


def setup_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{message}", style="{",
        rename_fields={"asctime": "ts", "levelname": "level", "message": "event"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is not a state change
