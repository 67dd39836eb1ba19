"""What a write transaction of the registry returns: its result and the revision it reached."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Written(Generic[T]):
    """What a write transaction returns: its result, and the revision it reached (None: no change)."""

    value: T
    revision: int | None
