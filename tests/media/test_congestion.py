"""When a subscriber's video is paused and tried again (the guard alone; end to end in test_sfu_loss.py)."""

from __future__ import annotations

import asyncio

import pytest
from roomwire.media import congestion
from roomwire.media.congestion import CongestionGuard

pytestmark = pytest.mark.timeout(20)


class Switch:
    def __init__(self) -> None:
        self.events: list[str] = []

    def pause(self) -> None:
        self.events.append("pause")

    def resume(self) -> None:
        self.events.append("resume")


async def test_two_lossy_reports_in_a_row_pause_then_video_is_tried_again_with_growing_waits(monkeypatch):
    monkeypatch.setattr(congestion, "RETRY_FIRST", 0.1)
    monkeypatch.setattr(congestion, "RETRY_MAX", 0.4)
    switch = Switch()
    guard = CongestionGuard(switch.pause, switch.resume)
    guard.report(0.5)
    guard.report(0.01)  # a good report in between: the strike is forgotten
    guard.report(0.5)
    assert switch.events == []
    guard.report(0.2)
    assert switch.events == ["pause"] and guard.paused
    guard.report(0.9)  # reports while paused change nothing
    await asyncio.sleep(0.15)
    assert switch.events == ["pause", "resume"]
    guard.report(0.5)
    guard.report(0.5)  # congested again soon after: the next wait doubles
    await asyncio.sleep(0.15)
    assert switch.events == ["pause", "resume", "pause"]
    await asyncio.sleep(0.1)
    assert switch.events[-1] == "resume"
    guard.close()


async def test_an_estimate_under_half_the_sending_rate_is_a_strike(monkeypatch):
    monkeypatch.setattr(congestion, "ESTIMATE_GRACE", 0.5)
    switch = Switch()
    guard = CongestionGuard(switch.pause, switch.resume)
    await asyncio.sleep(0.3)
    guard.estimate(100_000, 0)  # in the grace period, and the first one only starts the rate measurement
    await asyncio.sleep(0.6)
    guard.estimate(1_000_000, 75_000)  # ~1 Mbit/s sent: an estimate of 1 Mbit/s is fine
    await asyncio.sleep(0.6)
    guard.estimate(100_000, 150_000)
    await asyncio.sleep(0.6)
    guard.estimate(100_000, 225_000)
    assert switch.events == ["pause"]
    guard.close()
