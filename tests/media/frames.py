"""Reading what a received pattern video track shows: the frame counters `PatternVideoTrack` draws."""

from __future__ import annotations

import asyncio

from aiortc.mediastreams import MediaStreamTrack
from roomwire.media.sources import read_frame_counter


async def pattern_counters(track: MediaStreamTrack, count: int, timeout: float = 20) -> list[int]:
    """Read `count` frame counters from a pattern video track (frames without one are skipped)."""
    counters: list[int] = []
    async with asyncio.timeout(timeout):
        while len(counters) < count:
            counter = read_frame_counter(await track.recv())
            if counter is not None:
                counters.append(counter)
    return counters
