"""The bot kit's generated sources: their pace."""

from __future__ import annotations

import asyncio
import time

from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack


async def test_a_source_nobody_read_for_a_while_goes_on_at_its_rate_without_a_burst():
    """A bot cut off for seconds (nobody reads its tracks) must not send every missed frame at
    once when it is back: receivers would see a fast-forward burst."""
    for track, rate in ((PatternVideoTrack(160, 120, fps=30), 30), (ToneAudioTrack(), 50)):
        await track.recv()
        await asyncio.sleep(1.0)  # 30 video frames / 50 audio frames missed
        started = time.monotonic()
        for _ in range(rate // 3):  # a third of a second's worth
            await track.recv()
        assert time.monotonic() - started > 0.25, f"{track.kind}: missed frames came in a burst"
        track.stop()
