"""Per-connection flood protection: a token bucket answered with `rate_limited`."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """`rate` events per second on average, bursts of up to `burst`."""

    rate: float = 50.0
    burst: float = 100.0


class TokenBucket:
    __slots__ = ("_limit", "_stamp", "_tokens")

    def __init__(self, limit: RateLimit) -> None:
        self._limit = limit
        self._tokens = limit.burst
        self._stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._limit.burst, self._tokens + (now - self._stamp) * self._limit.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
