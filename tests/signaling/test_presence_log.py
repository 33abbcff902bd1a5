"""PresenceLog: offsets, all-or-nothing recovery, retention, waiting."""

from __future__ import annotations

import asyncio

from roomwire.signaling.backend import Retention
from roomwire.signaling.presence_log import PresenceLog


def person(identity: str) -> dict:
    return {"identity": identity, "name": identity, "metadata": {}, "joinedAt": 0, "transport": "bot", "tracks": []}


def filled(events: int, retention: Retention | None = None) -> PresenceLog:
    log = PresenceLog(retention or Retention())
    for n in range(events):
        log.participants[f"p{n}"] = person(f"p{n}")
        log.append("join", person(f"p{n}"))
    return log


def test_offsets_grow_by_one_per_event_and_events_carry_the_position() -> None:
    log = filled(3)
    assert log.offset == 3
    result = log.since(log.epoch, 0)
    assert [e["offset"] for e in result.events or []] == [1, 2, 3]
    assert all(e["epoch"] == log.epoch and e["type"] == "join" for e in result.events or [])


def test_a_position_it_can_serve_gets_exactly_the_later_events() -> None:
    log = filled(5)
    assert [e["offset"] for e in log.since(log.epoch, 3).events or []] == [4, 5]
    assert log.since(log.epoch, 5).events == []


def test_anything_it_cannot_serve_gets_a_snapshot() -> None:
    log = filled(5, Retention(max_events=2))
    for epoch, offset in ((log.epoch, 1), (log.epoch, 6), ("other", 4), (None, None), (log.epoch, -1)):
        result = log.since(epoch, offset)
        assert result.is_snapshot and result.offset == 5, (epoch, offset)
        assert sorted(p["identity"] for p in result.participants or []) == [f"p{n}" for n in range(5)]
    assert [e["offset"] for e in log.since(log.epoch, 3).events or []] == [4, 5]  # both still held


def test_events_older_than_the_retention_age_are_gone() -> None:
    log = filled(2, Retention(max_age=0.0))
    assert log.since(log.epoch, 0).is_snapshot


async def test_one_append_wakes_every_waiter() -> None:
    log = filled(1)
    waiters = [asyncio.create_task(log.wait_for_change(5)) for _ in range(3)]
    await asyncio.sleep(0)
    assert log.waiters == 3
    log.append("update", person("p0"))
    async with asyncio.timeout(1):
        await asyncio.gather(*waiters)
    assert log.waiters == 0


def test_an_empty_unwatched_room_counts_as_idle() -> None:
    occupied = filled(1)
    assert occupied.idle_for() == 0.0
    emptied = filled(1)
    emptied.participants.clear()
    emptied.append("leave", person("p0"))
    assert emptied.idle_for() >= 0.0 and emptied.emptied_at is not None
