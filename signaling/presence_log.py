"""One room's presence log in process memory: a bounded ring of events with epoch + offset."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque

from .backend import Recovery, Retention
from .protocol import Participant, PresenceEvent


def new_epoch() -> str:
    return secrets.token_urlsafe(6)


def now_ms() -> int:
    return int(time.time() * 1000)


class PresenceLog:
    """Participants of a room plus the ordered log of how they changed.

    Recovery replays every event after a position only when the log still holds all of them;
    otherwise the caller gets a snapshot. One asyncio.Event per room wakes every waiter at once.
    """

    def __init__(self, retention: Retention) -> None:
        self.retention = retention
        self.epoch = new_epoch()
        self.offset = 0
        self.created_at = now_ms()
        self.emptied_at: float | None = time.monotonic()
        self.participants: dict[str, Participant] = {}
        self.owners: dict[str, str] = {}
        self._events: deque[tuple[float, PresenceEvent]] = deque(maxlen=retention.max_events)
        self._changed = asyncio.Event()
        self.waiters = 0

    def append(self, kind: str, participant: Participant) -> PresenceEvent:
        self.offset += 1
        event = {
            "type": kind,
            "participant": participant,
            "epoch": self.epoch,
            "offset": self.offset,
            "ts": now_ms(),
        }
        self._events.append((time.monotonic(), event))
        self.emptied_at = None if self.participants else time.monotonic()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return event

    def snapshot(self) -> Recovery:
        return Recovery(self.epoch, self.offset, participants=[dict(p) for p in self.participants.values()])

    def since(self, epoch: str | None, offset: int | None) -> Recovery:
        """All events after the position, or a snapshot when any of them is gone."""
        self._expire()
        if epoch != self.epoch or offset is None or offset < 0 or offset > self.offset:
            return self.snapshot()
        if offset == self.offset:
            return Recovery(self.epoch, self.offset, events=[])
        first_held = self._events[0][1]["offset"] if self._events else self.offset + 1
        if offset + 1 < first_held:
            return self.snapshot()
        events = [event for _, event in self._events if event["offset"] > offset]
        return Recovery(self.epoch, self.offset, events=events)

    async def wait_for_change(self, timeout: float) -> None:
        self.waiters += 1
        try:
            # Not asyncio.wait_for: on 3.11 it swallows a cancellation that arrives together
            # with the event (a closing SSE stream would then keep waiting).
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass
        finally:
            self.waiters -= 1

    def idle_for(self) -> float:
        """Seconds this room has had neither participants nor waiters (0 while in use)."""
        if self.participants or self.waiters or self.emptied_at is None:
            return 0.0
        return time.monotonic() - self.emptied_at

    def _expire(self) -> None:
        horizon = time.monotonic() - self.retention.max_age
        while self._events and self._events[0][0] < horizon:
            self._events.popleft()
