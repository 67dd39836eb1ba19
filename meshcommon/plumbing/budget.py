"""Token buckets: how often one party may do what costs everyone else. Pure (the time is passed in).

Owns the rule that bounds one party's churn (a node changing its own record, which every watcher
is sent; a chat peer sending messages): a bucket of `capacity` actions per key, refilled at
`per_second`. A key that empties its bucket is refused until an action has dripped back in, so
nobody floods the others, while the few actions a real party takes (a restart at a new address,
a rename, a conversation) always pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Bucket:
    tokens: float
    at: float  # when `tokens` was counted


@dataclass
class Budgets:
    capacity: float
    per_second: float
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def take(self, key: str, now: float) -> bool:
        """Spend one change of `key`'s at `now`; False (nothing spent) when it has none left."""
        tokens = self.level(key, now)
        if tokens < 1:
            self.buckets[key] = Bucket(tokens, now)
            return False
        self.buckets[key] = Bucket(tokens - 1, now)
        return True

    def level(self, key: str, now: float) -> float:
        """What `key` has to spend at `now` (a clock that stepped back refills nothing, takes nothing)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            return self.capacity
        return min(self.capacity, bucket.tokens + max(0.0, now - bucket.at) * self.per_second)

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` has a change to spend again (0: it has one now)."""
        tokens = self.level(key, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_second

    def forget(self, key: str) -> None:
        self.buckets.pop(key, None)
