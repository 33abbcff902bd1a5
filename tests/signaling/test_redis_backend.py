"""The StateBackend contract, run against MemoryBackend and RedisBackend alike (a real redis-server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
from roomwire.signaling.backend import Retention, StateBackend
from roomwire.signaling.memory_backend import MemoryBackend
from roomwire.signaling.redis_backend import MEDIA_LEASE_MS, RedisBackend

from tests.signaling.redis_server import running_redis

pytestmark = pytest.mark.timeout(60)

MakeBackend = Callable[..., StateBackend]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
async def make_backend(request: pytest.FixtureRequest) -> AsyncIterator[MakeBackend]:
    made: list[StateBackend] = []
    prefix = f"t{uuid.uuid4().hex[:8]}"  # every test its own keyspace

    def make(retention: Retention | None = None) -> StateBackend:
        if request.param == "memory":
            backend: StateBackend = MemoryBackend(retention)
        else:
            url = request.getfixturevalue("redis_url")
            backend = RedisBackend(url, retention=retention, prefix=prefix)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


def person(identity: str, **fields: object) -> dict[str, object]:
    return {
        "identity": identity,
        "name": identity,
        "metadata": {},
        "joinedAt": 1,
        "transport": "websocket",
        "tracks": [],
        **fields,
    }


async def test_join_replace_leave_update(make_backend: MakeBackend) -> None:
    backend = make_backend()
    first = await backend.join("r", person("alice"), "sid-1")
    assert first.event["type"] == "join" and first.event["offset"] == 1 and first.replaced_owner is None
    assert first.event["participant"] == person("alice")
    assert first.snapshot.offset == 1 and first.snapshot.participants == [person("alice")]
    epoch = first.event["epoch"]

    second = await backend.join("r", person("bob"), "sid-2")
    assert (second.event["type"], second.event["offset"], second.event["epoch"]) == ("join", 2, epoch)
    assert sorted(p["identity"] for p in second.snapshot.participants or []) == ["alice", "bob"]

    replaced = await backend.join("r", person("alice", name="Alice 2"), "sid-3")
    assert replaced.event["type"] == "update" and replaced.replaced_owner == "sid-1"
    member = await backend.membership("r", "alice")
    assert member is not None and member.owner == "sid-3" and member.participant["name"] == "Alice 2"

    # owner-conditional: the replaced connection can neither update nor remove it
    assert await backend.update("r", "alice", "sid-1", {"name": "x"}) is None
    assert await backend.leave("r", "alice", "sid-1") is None
    updated = await backend.update("r", "alice", "sid-3", {"metadata": {"k": [1]}})
    assert updated is not None and updated["offset"] == 4 and updated["participant"]["metadata"] == {"k": [1]}
    assert updated["participant"]["tracks"] == []  # an empty list stays a list
    track = await backend.update("r", "bob", None, {"tracks": [{"sid": "T1"}]}, kind="track")
    assert track is not None and track["type"] == "track" and track["offset"] == 5

    left = await backend.leave("r", "alice", "sid-3")
    assert left is not None and left["type"] == "leave" and left["offset"] == 6
    assert await backend.leave("r", "alice") is None
    assert await backend.membership("r", "alice") is None
    assert await backend.update("r", "nobody", None, {"name": "x"}) is None

    snapshot = await backend.snapshot("r")
    assert snapshot is not None and (snapshot.epoch, snapshot.offset) == (epoch, 6)
    assert [p["identity"] for p in snapshot.participants or []] == ["bob"]
    assert await backend.snapshot("never-seen") is None
    rooms = await backend.rooms()
    assert [(r.name, r.participants) for r in rooms] == [("r", 1)] and rooms[0].created_at > 0


async def test_recover_replays_or_snapshots(make_backend: MakeBackend) -> None:
    backend = make_backend(Retention(max_events=3, max_age=600))
    epoch = (await backend.join("r", person("a"), "s1")).event["epoch"]
    for name in ("b", "c", "d"):
        await backend.join("r", person(name), f"s-{name}")
    # offsets 1..4 exist; only the last 3 are held
    replay = await backend.recover("r", epoch, 1)
    assert replay.events is not None and [e["offset"] for e in replay.events] == [2, 3, 4]
    assert (await backend.recover("r", epoch, 4)).events == []
    for position in [(epoch, 0), ("other123", 2), (epoch, 5), (epoch, -1), (None, None)]:
        result = await backend.recover("r", *position)
        assert result.is_snapshot and result.offset == 4, position
        assert sorted(p["identity"] for p in result.participants or []) == ["a", "b", "c", "d"]


async def test_recover_by_age(make_backend: MakeBackend) -> None:
    backend = make_backend(Retention(max_events=100, max_age=0.3))
    epoch = (await backend.join("r", person("a"), "s1")).event["epoch"]
    await asyncio.sleep(0.5)
    await backend.join("r", person("b"), "s2")
    assert (await backend.recover("r", epoch, 0)).is_snapshot  # event 1 is too old
    recent = await backend.recover("r", epoch, 1)
    assert recent.events is not None and [e["offset"] for e in recent.events] == [2]


async def test_unknown_room_gets_a_log_to_wait_on(make_backend: MakeBackend) -> None:
    backend = make_backend()
    empty = await backend.recover("fresh", None, None)
    assert empty.is_snapshot and empty.offset == 0 and empty.participants == []
    joined = await backend.join("fresh", person("a"), "s1")
    assert joined.event["epoch"] == empty.epoch and joined.event["offset"] == 1


async def test_wait_wakes_on_an_append(make_backend: MakeBackend) -> None:
    backend = make_backend()
    head = await backend.recover("r", None, None)
    waiters = [asyncio.create_task(backend.recover("r", head.epoch, head.offset, wait=10)) for _ in range(5)]
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in waiters)
    await backend.join("r", person("a"), "s1")
    results = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert all(r.events is not None and [e["offset"] for e in r.events] == [1] for r in results)
    quiet = await backend.recover("r", head.epoch, 1, wait=0.2)  # times out with nothing new
    assert quiet.events == []


async def test_redis_wait_wakes_on_another_nodes_append(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a, b = RedisBackend(redis_url, prefix=prefix), RedisBackend(redis_url, prefix=prefix)
    try:
        head = await b.recover("r", None, None)
        waiters = [asyncio.create_task(b.recover("r", head.epoch, 0, wait=10)) for _ in range(20)]
        await asyncio.sleep(0.2)
        clients = await a.redis.client_list()
        blocked = [c for c in clients if c.get("cmd") == "xread"]
        assert len(blocked) == 1  # twenty waiters, one XREAD
        await a.join("r", person("x"), "s1")
        results = await asyncio.wait_for(asyncio.gather(*waiters), 5)
        assert all(r.events is not None and r.events[0]["participant"]["identity"] == "x" for r in results)
    finally:
        await a.close()
        await b.close()


async def test_redis_offsets_stay_contiguous_across_nodes(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    nodes = [RedisBackend(redis_url, prefix=prefix, node_id=f"n{i}") for i in range(3)]
    try:
        await asyncio.gather(
            *(node.join("r", person(f"p{i}-{j}"), f"s{i}-{j}") for i, node in enumerate(nodes) for j in range(20))
        )
        await asyncio.gather(*(node.update("r", "p0-0", None, {"name": f"n{i}"}) for i, node in enumerate(nodes)))
        head = await nodes[0].recover("r", None, None)
        replay = await nodes[1].recover("r", head.epoch, 0)
        assert replay.events is not None
        assert [e["offset"] for e in replay.events] == list(range(1, 64))
        assert len({e["epoch"] for e in replay.events}) == 1
    finally:
        for node in nodes:
            await node.close()


async def test_redis_dead_node_is_reaped_once(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    dead = RedisBackend(redis_url, prefix=prefix, node_id="dead")
    survivors = [RedisBackend(redis_url, prefix=prefix, node_id=f"s{i}") for i in range(2)]
    await dead.start()
    await dead.join("r", person("gone"), "sid-gone")
    await dead.join("r", person("moved"), "sid-old")
    await dead.keep_media({"r"}, 0.0)
    await survivors[0].join("r", person("moved"), "sid-new")  # reconnected on a survivor
    head = await survivors[0].recover("r", None, None)
    # the dead node stops heartbeating without a goodbye
    await dead.liveness.close()
    await dead.inbox.close()
    await dead.link.close()
    await redis.asyncio.Redis.from_url(redis_url).delete(f"{prefix}:node:dead:alive")
    try:
        await asyncio.gather(*(s.reap_dead_nodes() for s in survivors), *(s.reap_dead_nodes() for s in survivors))
        replay = await survivors[1].recover("r", head.epoch, head.offset)
        assert replay.events is not None
        assert [(e["type"], e["participant"]["identity"]) for e in replay.events] == [("leave", "gone")]
        member = await survivors[1].membership("r", "moved")
        assert member is not None and member.owner == "sid-new"
        assert "dead" not in await survivors[0].redis.smembers(f"{prefix}:nodes")
        assert await survivors[0].redis.exists(f"{prefix}:node:dead:held", f"{prefix}:node:dead:media") == 0
    finally:
        for s in survivors:
            await s.close()


async def test_redis_empty_room_is_forgotten_after_the_retention_age(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(redis_url, retention=Retention(max_events=10, max_age=0.4), prefix=prefix)
    try:
        first = (await backend.join("r", person("a"), "s1")).event["epoch"]
        await asyncio.sleep(0.6)
        assert (await backend.snapshot("r")) is not None  # occupied: kept however old
        await backend.leave("r", "a")
        watched = await backend.recover("r", first, 2, wait=0.6)  # a watcher keeps it alive
        assert watched.epoch == first and watched.events == []
        await asyncio.sleep(0.6)
        assert await backend.snapshot("r") is None and await backend.rooms() == []
        again = await backend.join("r", person("a"), "s2")
        assert again.event["epoch"] != first and again.event["offset"] == 1
        assert (await backend.recover("r", first, 2)).is_snapshot
    finally:
        await backend.close()


async def test_redis_placement_counts_only_the_rooms_a_node_holds(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    busy, idle = (RedisBackend(redis_url, prefix=prefix, node_id=n) for n in ("busy", "idle"))
    await busy.start()
    await idle.start()
    try:
        await busy.keep_media(set(), 0.6)  # the score: rooms placed on a node + its load
        await idle.keep_media(set(), 0.0)
        # "x" is placed on the idle node, whose SFU never takes it (the request failed, the node
        # restarted): its lease lapses, and with it the room must leave the idle node's score
        assert await busy.media_node("x", place=True) == "idle"
        await asyncio.sleep(MEDIA_LEASE_MS / 1000 + 0.3)
        await busy.keep_media(set(), 0.6)
        await idle.keep_media(set(), 0.0)
        assert await busy.media_node("y", place=True) == "idle"
        # a room placed on a node but not started there yet still counts while its lease holds
        await idle.keep_media(set(), 0.0)
        assert await busy.media_node("z", place=True) == "busy"
    finally:
        await busy.close()
        await idle.close()


async def test_redis_a_node_back_before_its_reaper_finishes_stays_listed(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    back, survivor = RedisBackend(redis_url, prefix=prefix, node_id="back"), RedisBackend(redis_url, prefix=prefix)
    await back.start()
    try:
        # the survivor saw "back"'s key missing (a stall) and reaps it just as it registers again:
        # the node is alive, so the reaper must not strike it from the cluster's lists
        await survivor._reap("back")
        assert "back" in await survivor.redis.smembers(f"{prefix}:nodes")
        await back.join("r", person("ann"), "sid-ann")
        await survivor._reap("back")
        assert (await survivor.membership("r", "ann")) is not None
        assert await survivor.redis.scard(f"{prefix}:node:back:held") == 1
    finally:
        await back.close()
        await survivor.close()
