"""When a subscriber cannot keep up: its video is paused, then tried again, audio untouched.

Two signals from the subscriber count as a strike: a receiver report that says it lost at
least LOSS_LIMIT of a video stream since the last one, or a bandwidth estimate (REMB) under
ESTIMATE_SHARE of what the SFU sends it (not in the first ESTIMATE_GRACE seconds of video).
STRIKES in a row pause its video; after a wait (RETRY_FIRST seconds, doubled up to RETRY_MAX
when video is paused again soon after coming back) its video resumes, at the next keyframe.
Nothing queues meanwhile: paused video is not sent at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LOSS_LIMIT = 0.10
ESTIMATE_SHARE = 0.5
STRIKES = 2
RETRY_FIRST = 2.0
RETRY_MAX = 8.0
STABLE = 10.0  # seconds resumed without trouble: the next pause waits RETRY_FIRST again
MIN_RATE_WINDOW = 0.5  # seconds of sending a REMB is compared against, at least
# a receiver's estimate lags: it fell while the link was congested and climbs back a few % a
# second once media flows again, so for this long after video (re)starts REMB is not a strike
ESTIMATE_GRACE = 5.0


class CongestionGuard:
    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._pause = pause
        self._resume = resume
        self._loop = asyncio.get_running_loop()
        self.paused = False
        self._strikes = 0
        self._retry = RETRY_FIRST
        self._resumed_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sent: tuple[float, int] | None = None  # (loop time, octets) at the last estimate
        self._flowing_since = self._loop.time()

    def report(self, fraction_lost: float) -> None:
        """A receiver report for one of the subscriber's video streams."""
        self._judge(fraction_lost >= LOSS_LIMIT)

    def estimate(self, bitrate: int, octets_sent: int) -> None:
        """A REMB, with the octets sent so far on the streams it covers."""
        now = self._loop.time()
        before, self._sent = self._sent, (now, octets_sent)
        if before is None or now - before[0] < MIN_RATE_WINDOW:
            return
        if now - self._flowing_since < ESTIMATE_GRACE:
            return
        rate = (octets_sent - before[1]) * 8 / (now - before[0])
        self._judge(rate > 0 and bitrate < ESTIMATE_SHARE * rate)

    def _judge(self, congested: bool) -> None:
        if self.paused:
            return
        if not congested:
            self._strikes = 0
            return
        self._strikes += 1
        if self._strikes >= STRIKES:
            self._pause_video()

    def _pause_video(self) -> None:
        now = self._loop.time()
        recently = self._resumed_at is not None and now - self._resumed_at < STABLE
        self._retry = min(self._retry * 2, RETRY_MAX) if recently else RETRY_FIRST
        self.paused = True
        self._strikes = 0
        self._pause()
        self._timer = self._loop.call_later(self._retry, self._resume_video)

    def _resume_video(self) -> None:
        self._timer = None
        self.paused = False
        self._sent = None
        self._resumed_at = self._flowing_since = self._loop.time()
        self._resume()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
