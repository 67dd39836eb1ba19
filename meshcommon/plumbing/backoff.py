"""The one retry delay every meshvpn process uses: jittered exponential backoff, capped.

Owns the rule: `first` seconds after the first failure in a row, doubling after each further one,
never more than the caller's cap, and spread +-25 % so that many processes that failed together
(every agent after a control-plane outage, every worker after a lost database) do not retry in
step. Pure: the jitter is passed in (random by default), nothing sleeps here.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Backoff:
    jitter: Callable[[float, float], float] = random.uniform
    first: float = 0.5  # seconds before the first retry
    attempt: int = 0

    def next(self, cap: float) -> float:
        """The delay before the next attempt, counting this failure."""
        # The exponent stops growing long before the cap matters: 2 ** 1100 would not fit a float.
        delay = min(cap, self.first * 2 ** min(self.attempt, 32)) * self.jitter(0.75, 1.25)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A success: the next failure starts again from `first`."""
        self.attempt = 0
