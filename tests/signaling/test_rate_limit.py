"""TokenBucket: bursts up to `burst`, then `rate` events per second."""

from __future__ import annotations

import time

from roomwire.signaling.rate_limit import RateLimit, TokenBucket


def test_a_burst_then_refusals_then_refill() -> None:
    bucket = TokenBucket(RateLimit(rate=20.0, burst=5.0))
    assert [bucket.allow() for _ in range(6)] == [True] * 5 + [False]
    time.sleep(0.12)  # 20/s: two more tokens
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


def test_the_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(RateLimit(rate=1000.0, burst=3.0))
    time.sleep(0.05)
    assert sum(bucket.allow() for _ in range(10)) == 3
