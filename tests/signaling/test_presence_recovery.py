"""Recovery is all-or-nothing: a property test over random interleavings (hypothesis).

Joins, leaves and updates run through the real RoomService of a real server; a consumer follows
the room over HTTP (long polls, short SSE reads that resume with Last-Event-ID, and a live SSE
stream that the server may drop), sometimes rewinding to a checkpoint it held earlier. After
every sync its reconstructed participants equal the server's, every event it applies is the
one right after its position (no gap, no duplicate, no reordering), and a snapshot comes only
when the log no longer holds every missed event.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from roomwire.signaling import Retention, SignalingServer
from roomwire.signaling.server import SERVER_KEY

from tests.conftest import SECRET, start_app
from tests.signaling.sse_reader import SSEReader

MAX_EVENTS = 3
IDENTITIES = ("ana", "ben", "cy", "dee")
rooms = itertools.count()

identity = st.sampled_from(IDENTITIES)
operation = st.one_of(
    st.tuples(st.just("join"), identity),
    st.tuples(st.just("leave"), identity),
    st.tuples(st.just("update"), identity, st.text("xyz", max_size=3)),
    st.tuples(st.just("churn"), st.integers(min_value=1, max_value=2 * MAX_EVENTS)),  # n events in a row
    st.tuples(st.just("poll")),
    st.tuples(st.just("sse")),
    st.tuples(st.just("live")),  # open a live stream (if none is open)
    st.tuples(st.just("close")),  # the consumer closes its live stream
    st.tuples(st.just("drop")),  # the server drops every stream of the room
    st.tuples(st.just("rewind"), st.integers(min_value=0)),  # back to an earlier checkpoint
    st.tuples(st.just("lose"), st.sampled_from(["nothing", "other-epoch"])),  # a position the log can't serve
)


@dataclass
class Consumer:
    epoch: str | None = None
    offset: int | None = None
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[tuple[str | None, int | None, dict[str, dict[str, Any]]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    snapshots: int = 0

    def snapshot(self, body: dict[str, Any]) -> None:
        self.epoch, self.offset = body["epoch"], body["offset"]
        self.participants = {p["identity"]: p for p in body["participants"]}
        self.snapshots += 1
        self.changed.set()

    def event(self, event: dict[str, Any]) -> None:
        assert event["epoch"] == self.epoch, f"event of epoch {event['epoch']} while at {self.epoch}"
        assert event["offset"] == (self.offset or 0) + 1, f"event {event['offset']} while at {self.offset}"
        who = event["participant"]
        if event["type"] == "leave":
            assert who["identity"] in self.participants
            del self.participants[who["identity"]]
        else:
            self.participants[who["identity"]] = who
        self.offset = event["offset"]
        self.changed.set()

    def checkpoint(self) -> None:
        self.checkpoints.append((self.epoch, self.offset, dict(self.participants)))


@dataclass
class World:
    server: SignalingServer
    app: web.Application
    url: str
    session: aiohttp.ClientSession


async def start_world() -> tuple[World, web.AppRunner]:
    server = SignalingServer(secret=SECRET, retention=Retention(max_events=MAX_EVENTS))
    app = web.Application()
    server.attach(app)
    runner, url = await start_app(app)
    return World(server, app, url, aiohttp.ClientSession()), runner


async def run_scenario(world: World, ops: list[tuple[Any, ...]]) -> None:
    room = f"prop{next(rooms)}"
    server, session = world.server, world.session
    headers = {"Authorization": f"Bearer {server.issuer.mint(identity='watcher', room=room)}"}
    base = f"{world.url}/rooms/{room}/presence"
    consumer = Consumer()
    live: asyncio.Task[None] | None = None

    async def follow(last_event_id: str | None, opened: asyncio.Event) -> None:
        """Apply a live SSE stream to the consumer until it ends."""
        sent = dict(headers, **({"Last-Event-ID": last_event_id} if last_event_id else {}))
        async with session.get(f"{base}/sse", headers=sent) as response:
            assert response.status == 200
            opened.set()  # the server registers a stream before its headers go out
            reader = SSEReader(response)
            while (item := await reader.next(timeout=30)) is not None:
                apply_sse(consumer, item.event, item.json(), item.id)

    def position_id() -> str | None:
        return f"{consumer.epoch}:{consumer.offset}" if consumer.epoch is not None else None

    async def expect_caught_up(stream: asyncio.Task[None] | None = None) -> None:
        truth = await server.backend.recover(room, None, None)  # a snapshot, also of a new room
        stream = stream or live
        async with asyncio.timeout(5):
            while (consumer.epoch, consumer.offset) != (truth.epoch, truth.offset):
                consumer.changed.clear()
                changed = asyncio.ensure_future(consumer.changed.wait())
                await asyncio.wait({changed, *([stream] if stream else [])}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if stream is not None and stream.done():
                    stream.result()  # the stream's failed assertion, at once
                    assert (consumer.epoch, consumer.offset) == (truth.epoch, truth.offset), "the stream ended"
        assert consumer.participants == {p["identity"]: p for p in truth.participants or []}
        consumer.checkpoint()

    async def must_replay() -> bool:
        """True when the log still holds every event after the consumer's position."""
        truth = await server.backend.recover(room, None, None)  # a snapshot, also of a new room
        if consumer.epoch != truth.epoch or consumer.offset is None or consumer.offset > truth.offset:
            return False
        return truth.offset - consumer.offset <= MAX_EVENTS

    async def open_live() -> asyncio.Task[None]:
        opened = asyncio.Event()
        task = asyncio.create_task(follow(position_id(), opened))
        async with asyncio.timeout(5):
            await opened.wait()
        return task

    for op in ops:
        kind = op[0]
        if kind == "join":
            await server.rooms.join(room, participant_of(op[1]), f"watch:test:{op[1]}")
        elif kind == "leave":
            await server.rooms.leave(room, op[1], None, "left")
        elif kind == "update":
            await server.rooms.update(room, op[1], None, {"name": op[2]})
        elif kind == "churn":
            for n in range(op[1]):
                who = IDENTITIES[n % len(IDENTITIES)]
                if not await server.rooms.update(room, who, None, {"name": f"churn{n}"}):
                    await server.rooms.join(room, participant_of(who), f"watch:test:{who}")
        elif kind == "live" and live is None:
            live = await open_live()
            await expect_caught_up()
        elif kind == "close" and live is not None:
            live.cancel()
            await asyncio.gather(live, return_exceptions=True)
            live = None
        elif kind == "drop" and live is not None:
            world.app[SERVER_KEY].sse.close_streams(room)
            async with asyncio.timeout(5):
                await live  # ends cleanly; what it delivered is applied
            live = await open_live()  # EventSource reconnects by itself
            await expect_caught_up()
        elif live is not None:
            await expect_caught_up()  # a live consumer just keeps up
        elif kind == "poll":
            replay = await must_replay()
            query = f"?timeout=0&epoch={consumer.epoch}&offset={consumer.offset}" if consumer.epoch else "?timeout=0"
            async with session.get(f"{base}/poll{query}", headers=headers) as response:
                assert response.status == 200
                body = await response.json()
            assert ("events" in body) is replay, body
            if "snapshot" in body:
                consumer.snapshot({"epoch": body["epoch"], "offset": body["offset"], **body["snapshot"]})
            else:
                for event in body["events"]:
                    consumer.event(event)
                assert consumer.offset == body["offset"]
            await expect_caught_up()
        elif kind == "sse":
            replay = await must_replay()
            truth = await server.backend.recover(room, None, None)
            if (consumer.epoch, consumer.offset) != (truth.epoch, truth.offset):
                snapshots = consumer.snapshots
                task = asyncio.create_task(follow(position_id(), asyncio.Event()))
                await expect_caught_up(task)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                assert (consumer.snapshots == snapshots) is replay
        elif kind == "rewind" and consumer.checkpoints:
            epoch, offset, participants = consumer.checkpoints[op[1] % len(consumer.checkpoints)]
            consumer.epoch, consumer.offset, consumer.participants = epoch, offset, dict(participants)
        elif kind == "lose":
            consumer.epoch = None if op[1] == "nothing" else "someotherepoch"
            consumer.offset = None if op[1] == "nothing" else consumer.offset or 0
    if live is not None:
        await expect_caught_up()
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)


def participant_of(who: str) -> dict[str, Any]:
    return {"identity": who, "name": who, "metadata": {}, "joinedAt": 0, "transport": "bot", "tracks": []}


def apply_sse(consumer: Consumer, event: str, data: dict[str, Any], event_id: str | None) -> None:
    if event == "snapshot":
        consumer.snapshot(data)
    else:
        assert event == "presence", event
        consumer.event(data)
    assert event_id == f"{consumer.epoch}:{consumer.offset}"


@pytest.mark.timeout(120)
def test_reconstructed_participants_always_equal_the_servers():
    with asyncio.Runner() as runner:
        world, app_runner = runner.run(start_world())
        try:

            @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
            @given(ops=st.lists(operation, max_size=30))
            def check(ops: list[tuple[Any, ...]]) -> None:
                runner.run(run_scenario(world, ops))

            check()
        finally:
            runner.run(world.session.close())
            runner.run(app_runner.cleanup())
