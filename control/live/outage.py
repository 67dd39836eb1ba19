"""Logging an outage once: its first failure and its end, not every failed try in between.

Owns the rule for loops that retry something every fraction of a second (the sweeper, the revision
feed's refresh): while the thing stays down they would log a line per try and drown every other
event.
"""
from __future__ import annotations

from typing import Any

from meshcommon.plumbing.events import emit


class Outage:
    def __init__(self, failed: str, restored: str | None = None):
        self.failed_event, self.restored_event = failed, restored
        self.down = False

    def failed(self, exc: BaseException, **fields: Any) -> None:
        if not self.down:
            emit(self.failed_event, reason=str(exc), **fields)
        self.down = True

    def ok(self, **fields: Any) -> None:
        if self.down and self.restored_event is not None:
            emit(self.restored_event, **fields)
        self.down = False
