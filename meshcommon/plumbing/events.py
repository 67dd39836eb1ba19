"""Structured logging: one JSON line per state change.

Owns the log format shared by every meshvpn process (`EventFormatter`): one JSON object a line,
starting with `ts` (ISO-8601 UTC, microseconds), `host` (MESHVPN_HOST, else the host name),
`level` and `event`, so the lines of every host merge into one timeline by sorting on `ts`.
`event` names what happened (every name is in docs/events.md), the other fields say to what
(node, token), why (reason) and at which revision. Lines of the libraries under us (gunicorn,
uvicorn, asyncio, httpx) go through the same formatter as the event `library_log`, with their
`logger` and `message`. Never log a secret: tokens are referred to by id only. Also owns the
rate limit on repeated lines from those libraries (`RepeatFilter`).
"""
from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

log = logging.getLogger("meshvpn")


HOST_VARIABLE = "MESHVPN_HOST"  # the `host` of every line, where the host name is not the one to show (lab hosts)
LIBRARY_EVENT = "library_log"  # the event of a line a library logged

# Attributes of logging.LogRecord: an extra field by one of these names would make logging raise.
RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Fields every line starts with: an event's field of one of these names gets a trailing "_" too.
LINE_FIELDS = frozenset({"ts", "host", "level", "event", "logger"})


def emit(event: str, **fields) -> None:
    log.info(event, extra={f"{key}_" if key in RESERVED or key in LINE_FIELDS else key: value
                           for key, value in fields.items()})


def host_name(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(HOST_VARIABLE) or socket.gethostname()


def iso_utc(seconds: float) -> str:
    """A Unix time as ISO-8601 UTC with microseconds: 2026-11-30T16:00:00.123456Z (sorts as text)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventFormatter(JsonFormatter):
    """One JSON object a line: ts, host, level, event, then the event's fields (or a library's
    `logger` and `message`), and `exc_info` when there is an exception."""

    def __init__(self, host: str):
        super().__init__("{message}", style="{", rename_fields={"message": "event"})
        self.host = host

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_data.update(ts=iso_utc(record.created), host=self.host, level=record.levelname)
        super().add_fields(log_data, record, message_dict)
        if record.name != log.name:
            log_data.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
            log_data.update(event=LIBRARY_EVENT, logger=record.name, message=record.message)


# Loggers that write a line per failed accept() or refused connection: under a flood of hostile
# connections they would write megabytes a second (asyncio logs each failed accept with a traceback).
NOISY_LOGGERS = ("asyncio", "uvicorn.error", "gunicorn.error", "falcon")


class RepeatFilter(logging.Filter):
    """Lets through at most `limit` records of one kind per `interval` seconds, then summarises.

    A kind is the logger, the level and the first line of the message template. When a window in
    which records were dropped has ended, one record says how many (at the next record through
    the filter). At most `max_kinds` kinds are tracked; past that, records pass untracked.
    """

    def __init__(self, limit: int = 10, interval: float = 60.0, clock=time.monotonic, max_kinds: int = 256):
        super().__init__()
        self.limit, self.interval, self.clock, self.max_kinds = limit, interval, clock, max_kinds
        self.windows: dict[tuple[str, int, str], list] = {}  # kind -> [start, seen, dropped]
        self.due = math.inf  # when the earliest window ends
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "repeats_suppressed"):  # a summary of ours
            return True
        kind = (record.name, record.levelno, str(record.msg).partition("\n")[0])
        now = self.clock()
        with self.lock:
            ended = self._end_windows(now)
            window = self.windows.get(kind)
            if window is None and len(self.windows) < self.max_kinds:
                window = self.windows[kind] = [now, 0, 0]
                self.due = min(self.due, now + self.interval)
            passed = window is None or window[1] < self.limit
            if window is not None:
                window[1 if passed else 2] += 1
        for done, dropped in ended:  # outside the lock: handlers may log again
            self._summarise(done, dropped)
        return passed

    def _end_windows(self, now: float) -> list[tuple[tuple[str, int, str], int]]:
        if now < self.due:
            return []
        ended = [(kind, w[2]) for kind, w in self.windows.items() if now - w[0] >= self.interval]
        for kind, _ in ended:
            del self.windows[kind]
        self.due = min((w[0] + self.interval for w in self.windows.values()), default=math.inf)
        return [(kind, dropped) for kind, dropped in ended if dropped]

    def _summarise(self, kind: tuple[str, int, str], dropped: int) -> None:
        name, level, headline = kind
        summary = logging.LogRecord(name, level, __file__, 0, "suppressed %d repeats of %r (at most %d per %g s)",
                                    (dropped, headline, self.limit, self.interval), None)
        summary.repeats_suppressed = dropped
        logging.getLogger(name).handle(summary)


def setup_logging(level: str = "INFO", stream=None) -> None:
    """Every line of this process through `EventFormatter`, on stderr (or `stream`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(EventFormatter(host_name()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is not a state change
    repeats = RepeatFilter()
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RepeatFilter)]:
            logger.removeFilter(old)
        logger.addFilter(repeats)
