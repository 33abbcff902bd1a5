"""The packets a published video track is missing, asked for again until they are given up.

A gap is NACKed to the publisher as soon as a later packet reveals it, and again every
NACK_RETRY while it stays open; a packet still missing GIVE_UP seconds after the gap showed
is lost for good, and the track's forwarder asks for a keyframe instead. So a loss costs at
most one keyframe round trip, never a stall.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

NACK_RETRY = 0.03
GIVE_UP = 0.15
MAX_MISSING = 256  # a jump further than this is a restart of the stream, not a loss


class ReceiveGaps:
    """`send_nack(seqs)` asks the publisher again; `lost(seqs)` reports packets given up (an
    empty list: a jump too large to repair)."""

    def __init__(self, send_nack: Callable[[list[int]], None], lost: Callable[[list[int]], None]) -> None:
        self._send_nack = send_nack
        self._lost = lost
        self._highest: int | None = None
        self._missing: dict[int, tuple[float, float]] = {}  # seq -> (gap seen, last NACK)
        self._timer: asyncio.TimerHandle | None = None

    def received(self, seq: int, now: float) -> None:
        highest = self._highest
        if highest is None:
            self._highest = seq
            return
        ahead = (seq - highest) & 0xFFFF
        if ahead >= 0x8000:  # older than the newest: a repair, or a reordered packet
            self._missing.pop(seq, None)
            return
        if ahead == 0:
            return
        self._highest = seq
        if ahead == 1:
            return
        if ahead - 1 > MAX_MISSING:
            given_up = list(self._missing)
            self._missing.clear()
            self._lost(given_up)
            return
        gap = [(highest + i) & 0xFFFF for i in range(1, ahead)]
        for missing in gap:
            self._missing[missing] = (now, now)
        self._send_nack(gap)
        if len(self._missing) > MAX_MISSING:
            oldest = list(self._missing)[: len(self._missing) - MAX_MISSING]
            for missing in oldest:
                del self._missing[missing]
            self._lost(oldest)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(NACK_RETRY, self._check)

    def _check(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        again: list[int] = []
        given_up: list[int] = []
        for seq, (seen, asked) in list(self._missing.items()):
            if now - seen >= GIVE_UP:
                given_up.append(seq)
                del self._missing[seq]
            elif now - asked >= NACK_RETRY * 0.9:  # timers fire a hair early
                again.append(seq)
                self._missing[seq] = (seen, now)
        if again:
            self._send_nack(again)
        if given_up:
            self._lost(given_up)
        if self._missing:
            self._timer = loop.call_later(NACK_RETRY, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._missing.clear()
