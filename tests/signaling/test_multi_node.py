"""Two (and more) roomwire nodes sharing one real redis-server: presence, signals, messages,
identity replacement and SSE cross nodes; a node that dies has its participants reported leave."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web
from redis import asyncio as aioredis
from roomwire.signaling import SignalingServer
from roomwire.signaling.redis_backend import RedisBackend

from tests.conftest import SECRET, RunningServer, free_port, start_app
from tests.node_process import NodeProcess
from tests.signaling.redis_server import running_redis
from tests.signaling.sse_reader import SSEReader
from tests.sio_client import SioClient, joined_client

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with running_redis() as url:  # one per test: no keys or nodes left over from another
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


StartNode = Callable[[], Awaitable[RunningServer]]


@pytest.fixture
async def start_node(redis_url: str) -> AsyncIterator[StartNode]:
    """Nodes as `roomwire serve --redis-url` builds them; stopped before their redis-server."""
    started: list[web.AppRunner] = []

    async def start() -> RunningServer:
        server = SignalingServer(secret=SECRET, backend=RedisBackend(redis_url))
        app = web.Application()
        server.attach(app)
        runner, url = await start_app(app)
        started.append(runner)
        return RunningServer(url=url, server=server, app=app)

    yield start
    for runner in reversed(started):
        await runner.cleanup()


@pytest.fixture
async def nodes(start_node: StartNode) -> list[RunningServer]:
    return [await start_node() for _ in range(2)]


async def connected(node: RunningServer, identity: str, room: str = "r") -> SioClient:
    client = SioClient()
    await client.connect(node.url, node.token(room, identity))
    return client


async def test_presence_crosses_nodes(nodes: list[RunningServer], redis: aioredis.Redis) -> None:
    a, b = nodes
    ann, bob = await connected(a, "ann"), await connected(b, "bob")
    ann_ack = await ann.call("join")
    bob_ack = await bob.call("join")
    assert bob_ack["epoch"] == ann_ack["epoch"] and (ann_ack["offset"], bob_ack["offset"]) == (1, 2)
    assert sorted(p["identity"] for p in bob_ack["participants"]) == ["ann", "bob"]
    seen = await ann.wait_for("presence", lambda e: e["participant"]["identity"] == "bob")
    assert (seen["type"], seen["epoch"], seen["offset"]) == ("join", ann_ack["epoch"], 2)
    await bob.close()
    gone = await ann.wait_for("presence", lambda e: e["type"] == "leave")
    assert (gone["participant"]["identity"], gone["epoch"], gone["offset"]) == ("bob", ann_ack["epoch"], 3)
    assert [e["offset"] for e in ann.events["presence"]] == [1, 2, 3]  # her own join, bob's, his leave
    await ann.close()


async def test_signal_and_message_cross_nodes(nodes: list[RunningServer], redis: aioredis.Redis) -> None:
    a, b = nodes
    ann, bob = await connected(a, "ann"), await connected(b, "bob")
    assert (await ann.call("join"))["ok"] and (await bob.call("join"))["ok"]
    assert (await ann.call("signal", {"to": "bob", "type": "offer", "data": {"sdp": "v=0"}}))["ok"]
    got = await bob.wait_for("signal")
    assert got == {"from": "ann", "type": "offer", "data": {"sdp": "v=0"}}
    direct = await bob.call("message", {"data": "to ann", "to": "ann"})
    broadcast = await bob.call("message", {"data": "to all"})
    assert direct["ok"] and broadcast["ok"]
    await ann.wait_for("message", lambda m: m["id"] == broadcast["id"])
    assert [(m["from"], m["data"]) for m in ann.events["message"]] == [("bob", "to ann"), ("bob", "to all")]
    assert bob.events["message"] == []  # never echoed to its sender
    await ann.close()
    await bob.close()


async def test_identity_replaced_from_another_node(nodes: list[RunningServer], redis: aioredis.Redis) -> None:
    a, b = nodes
    observer, first, second = await connected(a, "obs"), await connected(a, "ann"), await connected(b, "ann")
    await observer.call("join")
    await first.call("join")
    ack = await second.call("join")
    assert ack["ok"] and [p["identity"] for p in ack["participants"]].count("ann") == 1
    assert await first.wait_for("kicked") == {"reason": "replaced"}
    await asyncio.wait_for(first.disconnected.wait(), 5)
    await observer.wait_for("presence", lambda e: e["type"] == "update")
    await asyncio.sleep(0.5)  # a wrong leave from the old connection's disconnect would be here by now
    assert [(e["type"], e["participant"]["identity"]) for e in observer.events["presence"]] == [
        ("join", "obs"),
        ("join", "ann"),
        ("update", "ann"),
    ]
    member = await b.server.backend.membership("r", "ann")
    assert member is not None and member.owner == second.sio.get_sid()
    await observer.close()
    await second.close()


async def test_sse_watcher_sees_another_nodes_events(nodes: list[RunningServer], redis: aioredis.Redis) -> None:
    a, b = nodes
    url = f"{b.url}/rooms/r/presence/sse"
    async with aiohttp.ClientSession() as http, http.get(url, params={"token": b.token("r", "watcher")}) as response:
        assert response.status == 200
        reader = SSEReader(response)
        first = await reader.next()
        assert first is not None and first.event == "snapshot"
        ann, _ = await joined_client(a.url, a.token("r", "ann"))
        event = await reader.next()
        assert event is not None and event.event == "presence"
        assert (event.json()["type"], event.json()["participant"]["identity"]) == ("join", "ann")
        assert event.id == f"{first.json()['epoch']}:{first.json()['offset'] + 1}"
        await ann.close()
        left = await reader.next()
        assert left is not None and left.json()["type"] == "leave"


async def test_dead_node_participants_leave(start_node: StartNode, redis_url: str, redis: aioredis.Redis) -> None:
    survivor = await start_node()
    port = free_port()
    env = {**os.environ, "ROOMWIRE_SECRET": SECRET, "ROOMWIRE_REDIS_URL": redis_url}
    doomed = subprocess.Popen(  # noqa: ASYNC220 - started once, killed on purpose
        [sys.executable, "-m", "roomwire.signaling.cli", "serve", "--port", str(port), "--media", "none"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        doomed_url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    async with http.get(f"{doomed_url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    assert doomed.poll() is None, doomed.stderr.read() if doomed.stderr else ""
                    await asyncio.sleep(0.1)
        observer = await connected(survivor, "obs")
        victim = await connected(survivor, "victim")  # only to mint a token; it reconnects below
        await victim.close()
        victim = SioClient()
        await victim.connect(doomed_url, survivor.token("r", "victim"))
        await observer.call("join")
        assert (await victim.call("join"))["ok"]
        await observer.wait_for("presence", lambda e: e["participant"]["identity"] == "victim")
        (doomed_id,) = await redis.smembers("roomwire:nodes") - {survivor.server.backend.node_id}
        await redis.sadd(f"roomwire:node:{doomed_id}:held", "not an entry")  # no script writes this
        doomed.send_signal(signal.SIGKILL)  # no goodbye: its heartbeat just stops
        doomed.wait(timeout=10)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        gone = await observer.wait_for(
            "presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "victim", timeout=10
        )
        assert loop.time() - killed_at < 10
        assert gone["offset"] == 3
        assert await survivor.server.backend.membership("r", "victim") is None
        async with asyncio.timeout(5):  # and the dead node is forgotten, unreadable entry and all
            while doomed_id in await redis.smembers("roomwire:nodes"):  # noqa: ASYNC110 - polling Redis
                await asyncio.sleep(0.1)
        assert not await redis.exists(f"roomwire:node:{doomed_id}:held")
        await observer.close()
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=10)


async def test_a_node_restarted_under_its_node_id_lets_its_previous_participants_go(
    start_node: StartNode, redis_url: str, redis: aioredis.Redis
) -> None:
    """kill -9 and a restart before any other node reaps it (a supervisor, a fixed --node-id):
    the participants of the killed process must not stay in their rooms for good."""
    survivor = await start_node()
    doomed = await NodeProcess(redis_url).start()
    try:
        observer = await connected(survivor, "obs")
        await observer.call("join")
        victim = SioClient()
        await victim.connect(doomed.url, survivor.token("r", "victim"))
        assert (await victim.call("join"))["ok"]
        await observer.wait_for("presence", lambda e: e["participant"]["identity"] == "victim")
        doomed.kill()
        await doomed.process.wait()
        # entries no script writes, beside the victim's: skipped, not the end of the clean-up
        garbage = ['["r", "victim"]', "{}", *(f"not json {i}" for i in range(20))]
        await redis.sadd(f"roomwire:node:{doomed.node_id}:held", *garbage)
        doomed = await NodeProcess(redis_url, port=doomed.port).start()  # the same node id
        await observer.wait_for(
            "presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "victim", timeout=10
        )
        assert await survivor.server.backend.membership("r", "victim") is None
        await observer.close()
        await victim.close()
    finally:
        await doomed.stop()


async def test_presence_reaches_every_socket_in_log_order(nodes: list[RunningServer], redis: aioredis.Redis) -> None:
    """Changes made on both nodes at once: each client sees the log's offsets, in order, once each."""
    clients = [await connected(node, f"{name}{i}") for i in range(4) for node, name in zip(nodes, "ab", strict=True)]
    acks = [await client.call("join") for client in clients]
    assert all(ack["ok"] for ack in acks)

    async def churn(client: SioClient, who: int) -> None:
        for n in range(10):
            ack = await client.call("update", {"metadata": {"n": n, "who": who}})
            assert "self" in ack, ack

    await asyncio.gather(*(churn(client, i) for i, client in enumerate(clients)))
    last = acks[-1]["offset"] + 10 * len(clients)
    for client, ack in zip(clients, acks, strict=True):
        await client.wait_for("presence", lambda e: e["offset"] == last)
        offsets = [e["offset"] for e in client.events["presence"] if e["offset"] >= ack["offset"]]
        assert offsets == list(range(ack["offset"], last + 1))
    for client in clients:
        await client.close()
