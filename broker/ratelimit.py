"""Rate limits: token buckets per key, in memory, thread-safe and bounded.

The counters live in the memory of one broker process, so with N worker processes a caller
may make up to N times the configured rate (each worker refuses on its own). That is the
trade-off chosen on purpose: a limit checked on every sign-in and token request should not add
database writes (and, on SQLite, contention for its single writer) to the hot path, and the
limits are there to blunt brute force and floods, not to meter exactly. Divide the settings by
the worker count when that matters. A restart empties the buckets.

A bucket holds up to `capacity` tokens and regains `capacity` every `period` seconds, evenly.
A request spends one token (or more: failures may cost more) and is refused while the bucket is
empty. Spending may take a bucket below zero, down to minus its capacity, so that a flood of
failures waits longer; a full bucket is the same as no bucket, which is what lets the least
recently used keys be dropped when there are too many.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.settings import Settings

Clock = Callable[[], float]
MAX_KEYS = 50_000


@dataclass
class Limiter:
    """Token buckets of one kind (e.g. sign-ins per address), one per key."""

    capacity: float
    period: float
    clock: Clock = time.monotonic
    max_keys: int = MAX_KEYS
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def enabled(self) -> bool:
        """A capacity of 0 means no limit."""
        return self.capacity > 0

    def _level(self, key: str, now: float) -> float:
        level, then = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, level + (now - then) * self.capacity / self.period)

    def wait(self, key: str) -> float:
        """Seconds until `key` may make a request; 0 if it may now. Spends nothing."""
        if not self.enabled:
            return 0.0
        with self._lock:
            level = self._level(key, self.clock())
        if level >= 1:
            return 0.0
        return (1 - level) * self.period / self.capacity

    def spend(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` tokens from `key`'s bucket (at most down to minus its capacity)."""
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            level = max(-self.capacity, self._level(key, now) - cost)
            self._buckets[key] = (level, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(seconds: float) -> int:
    """Seconds for a Retry-After header: whole, and at least one."""
    return max(1, math.ceil(seconds))


@dataclass
class RateLimits:
    """Every limit of one broker process.

    `signin` counts sign-in requests per address; `failures` counts failed sign-ins and failed
    client authentications, keyed by address and by user name or client id, much more strictly;
    `oauth` counts requests to the OAuth endpoints per address and `client` per client.
    """

    signin: Limiter
    failures: Limiter
    oauth: Limiter
    client: Limiter

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = time.monotonic) -> RateLimits:
        """The limits the settings configure, reading time from `clock`."""
        return cls(
            signin=Limiter(settings.rate_signin_per_minute, 60.0, clock),
            failures=Limiter(settings.rate_failures_per_hour, 3600.0, clock),
            oauth=Limiter(settings.rate_oauth_per_minute, 60.0, clock),
            client=Limiter(settings.rate_client_per_minute, 60.0, clock),
        )
