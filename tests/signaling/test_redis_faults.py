"""Two real nodes on a real redis-server that the test restarts (it comes back empty) and stalls
(SIGSTOP), with participants on both nodes, Socket.IO, SSE and long-poll consumers, and a
member sending messages all the while.

Afterwards every participant is listed once, every consumer's view equals REST's, no message
acked `ok` is lost, nobody connected was removed by a stall (a restart is one clear recovery:
a new epoch), and during the outage nothing was acked `ok` that was not carried out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from roomwire.signaling import SignalingServer
from roomwire.signaling.redis_backend import RedisBackend

from tests.conftest import SECRET, RunningServer, start_app
from tests.signaling.redis_server import RedisProcess
from tests.signaling.sse_reader import SSEReader
from tests.sio_client import SioClient, joined_client

pytestmark = pytest.mark.timeout(120)

MEMBERS = {"a1": 0, "a2": 0, "b1": 1, "b2": 1}  # identity -> the node it connects to


@pytest.fixture
async def nodes(redis_process: RedisProcess) -> AsyncIterator[list[RunningServer]]:
    runners: list[web.AppRunner] = []
    started = []
    for _ in range(2):
        server = SignalingServer(secret=SECRET, backend=RedisBackend(redis_process.url))
        app = web.Application()
        server.attach(app)
        runner, url = await start_app(app)
        runners.append(runner)
        started.append(RunningServer(url=url, server=server, app=app))
    yield started
    for runner in reversed(runners):
        await runner.cleanup()


@dataclass
class View:
    """What a consumer believes the room is, built by the protocol's rules: a snapshot replaces
    everything; an event of a new epoch starts from its offset 1."""

    epoch: str = ""
    offset: int = 0
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def snapshot(self, epoch: str, offset: int, participants: list[dict[str, Any]]) -> None:
        self.epoch, self.offset = epoch, offset
        self.participants = {p["identity"]: p for p in participants}
        if not self.epochs or self.epochs[-1] != epoch:
            self.epochs.append(epoch)

    def event(self, event: dict[str, Any]) -> None:
        if event["epoch"] != self.epoch:
            assert event["offset"] == 1, f"a new epoch must be seen from its start: {event}"
            self.snapshot(event["epoch"], 0, [])
        elif event["offset"] <= self.offset:
            return
        assert event["offset"] == self.offset + 1, f"a gap before {event}"
        self.offset = event["offset"]
        who = event["participant"]
        if event["type"] == "leave":
            self.participants.pop(who["identity"], None)
            self.left.append(who["identity"])
        else:
            self.participants[who["identity"]] = who


def socket_view(ack: dict[str, Any], client: SioClient) -> View:
    view = View()
    view.snapshot(ack["epoch"], ack["offset"], ack["participants"])
    for event in client.events["presence"]:
        view.event(event)
    return view


async def follow_sse(node: RunningServer, view: View) -> None:
    """An SSE consumer that reconnects with Last-Event-ID, as EventSource does."""
    last: str | None = None
    token = node.token("r", "sse-viewer")
    async with aiohttp.ClientSession() as http:
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{node.url}/rooms/r/presence/sse", params={"token": token}, headers=headers) as r:
                    reader = SSEReader(r)
                    while (item := await reader.next(timeout=60)) is not None:
                        last = item.id
                        if item.event == "snapshot":
                            body = item.json()
                            view.snapshot(body["epoch"], body["offset"], body["participants"])
                        else:
                            view.event(item.json())
            await asyncio.sleep(0.5)


async def follow_poll(node: RunningServer, view: View) -> None:
    token = node.token("r", "poll-viewer")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            params = {"timeout": "2", **({"epoch": view.epoch, "offset": str(view.offset)} if view.epoch else {})}
            try:
                async with http.get(f"{node.url}/rooms/r/presence/poll", params=params) as response:
                    body = await response.json()
                    if response.status == 503:
                        assert body["error"]["code"] == "unavailable"
                        await asyncio.sleep(0.5)
                        continue
                    assert response.status == 200, body
            except aiohttp.ClientError:
                await asyncio.sleep(0.5)
                continue
            if "snapshot" in body:
                view.snapshot(body["epoch"], body["offset"], body["snapshot"]["participants"])
            for event in body.get("events", []):
                view.event(event)


@dataclass
class Chatter:
    """A member that sends a message every 200 ms and keeps every ack."""

    client: SioClient
    acks: list[dict[str, Any]] = field(default_factory=list)

    async def run(self) -> None:
        n = 0
        while True:
            n += 1
            self.acks.append(await self.client.call("message", {"data": {"n": n}}, timeout=15))
            await asyncio.sleep(0.2)

    def delivered_ids(self) -> list[str]:
        return [ack["id"] for ack in self.acks if ack["ok"]]


async def rest_view(node: RunningServer) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {node.admin_token()}"}) as http:
        async with http.get(f"{node.url}/api/rooms/r") as response:
            return await response.json() if response.status == 200 else {}


def identities(participants: Any) -> list[str]:
    values = participants.values() if isinstance(participants, dict) else participants
    return sorted(p["identity"] for p in values)


async def settled(nodes: list[RunningServer], views: dict[str, View], timeout: float = 30) -> dict[str, Any]:
    """Wait until REST on both nodes lists every member once and every view equals it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rest = [await rest_view(node) for node in nodes]
        listed = [identities(r.get("participants", [])) for r in rest]
        mismatched = {
            name: identities(view.participants)
            for name, view in views.items()
            if not rest[0] or sorted(view.participants.values(), key=lambda p: p["identity"]) != rest[0]["participants"]
        }
        if listed == [sorted(MEMBERS)] * 2 and rest[0] == rest[1] and not mismatched:
            return rest[0]
        assert loop.time() < deadline, f"not settled: REST {listed}, views that differ {mismatched}"
        await asyncio.sleep(0.25)


@pytest.mark.parametrize(
    ("fault", "seconds"),
    [("restart", 2), ("restart", 10), ("stall", 2), ("stall", 10)],
    ids=["restart-2s", "restart-10s", "stall-2s", "stall-10s"],
)
async def test_nobody_is_dropped_and_nothing_acked_is_lost(
    nodes: list[RunningServer], redis_process: RedisProcess, fault: str, seconds: float
) -> None:
    clients, acks = {}, {}
    for identity, index in MEMBERS.items():
        node = nodes[index]
        clients[identity], acks[identity] = await joined_client(node.url, node.token("r", identity))
    await clients["a1"].wait_for("presence", lambda e: e["participant"]["identity"] == "b2")
    sse_view, poll_view = View(), View()
    chatter = Chatter(clients["a1"])
    background = [
        asyncio.create_task(follow_sse(nodes[1], sse_view)),
        asyncio.create_task(follow_poll(nodes[0], poll_view)),
        asyncio.create_task(chatter.run()),
    ]
    try:
        before = await settled(nodes, {"sse": sse_view, "poll": poll_view})
        await asyncio.sleep(0.5)
        if fault == "restart":
            await redis_process.restart(seconds)
        else:
            await redis_process.stall(seconds)
        views = {name: socket_view(acks[name], client) for name, client in clients.items()}
        after = await settled(nodes, {**views, "sse": sse_view, "poll": poll_view})
        recovered = len(chatter.acks) + 1  # the one in flight may have waited out the outage
        await asyncio.sleep(2)  # messages keep going after Redis is back
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    # during the outage an operation was carried out or answered `unavailable`: never a guess
    assert {ack["error"]["code"] for ack in chatter.acks if not ack["ok"]} <= {"unavailable"}
    assert chatter.acks[recovered:] and all(ack["ok"] for ack in chatter.acks[recovered:])  # back to normal
    last = chatter.delivered_ids()[-1]
    for name in ("a2", "b1", "b2"):  # every message acked `ok` reached every other member
        await clients[name].wait_for("message", lambda m: m["id"] == last)
        got = [m["id"] for m in clients[name].events["message"]]
        assert [i for i in chatter.delivered_ids() if i not in got] == [], name
    for client in clients.values():
        assert not client.disconnected.is_set() and not client.events["kicked"]
    views = {name: socket_view(acks[name], client) for name, client in clients.items()}
    if fault == "stall":  # nobody connected was removed, and the log went on as it was
        assert after["epoch"] == before["epoch"]
        for view in [*views.values(), sse_view, poll_view]:
            assert view.left == [] and view.epochs == [before["epoch"]]
    else:  # Redis came back empty: one clear recovery, a new epoch everybody moved to
        assert after["epoch"] != before["epoch"]
        for view in [*views.values(), sse_view, poll_view]:
            assert view.epochs == [before["epoch"], after["epoch"]], view.epochs
    for client in clients.values():
        await client.close()


async def test_a_participant_removed_behind_its_back_is_told_to_rejoin(nodes: list[RunningServer]) -> None:
    a, b = nodes
    ann, _ = await joined_client(a.url, a.token("r", "ann"))
    bob, _ = await joined_client(b.url, b.token("r", "bob"))
    # node b removes ann as a reaper would while her node was cut off from Redis
    member = await b.server.backend.membership("r", "ann")
    assert member is not None and member.node == a.server.backend.node_id
    assert await b.server.backend.leave("r", "ann", member.owner) is not None
    ack = await ann.call("message", {"data": "am I still here?"})
    assert ack["ok"] is False and ack["error"]["code"] == "conflict"
    assert await ann.wait_for("kicked") == {"reason": "rejoin"}
    await asyncio.wait_for(ann.disconnected.wait(), 5)
    assert not bob.events["message"]
    again, ack = await joined_client(a.url, a.token("r", "ann"))
    assert identities(ack["participants"]) == ["ann", "bob"]
    await again.close()
    await bob.close()


async def test_an_operation_during_an_outage_answers_unavailable(
    nodes: list[RunningServer], redis_process: RedisProcess
) -> None:
    a, b = nodes
    ann, _ = await joined_client(a.url, a.token("r", "ann"))
    await joined_client(b.url, b.token("r", "bob"))
    redis_process.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for event, payload in (("signal", {"to": "bob", "type": "offer", "data": {}}), ("message", {"data": 1})):
        ack = await ann.call(event, payload, timeout=15)
        assert ack["ok"] is False and ack["error"]["code"] == "unavailable", ack
    assert loop.time() - started < 12
    newcomer = SioClient()
    await newcomer.connect(b.url, b.token("r", "cy"))
    assert (await newcomer.call("join", timeout=15))["error"]["code"] == "unavailable"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{a.url}/api/rooms/r", params={"token": a.token("r", "x")}) as response:
            assert response.status == 503 and (await response.json())["error"]["code"] == "unavailable"
    await asyncio.to_thread(redis_process.start)
    async with asyncio.timeout(15):  # back: the newcomer may join now
        while not (await newcomer.call("join", timeout=15))["ok"]:  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.5)
    await ann.close()
    await newcomer.close()


@pytest.mark.timeout(120)
async def test_a_quiet_room_logs_nothing_at_error_for_a_minute(
    nodes: list[RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes
    ann, _ = await joined_client(a.url, a.token("r", "ann"))
    bob, _ = await joined_client(b.url, b.token("r", "bob"))
    token = a.token("r", "viewer")
    with caplog.at_level(logging.WARNING):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{a.url}/rooms/r/presence/sse", params={"token": token}) as response:
                reader = SSEReader(response)
                assert (await reader.next()).event == "snapshot"
                await asyncio.sleep(60)  # idle: every blocking read times out, many times over
                assert (await bob.call("update", {"name": "Bob"}))["ok"]
                event = await reader.next()  # and the next event still arrives at once
                assert event is not None and event.json()["participant"]["name"] == "Bob"
    await ann.wait_for("presence", lambda e: e["participant"].get("name") == "Bob", timeout=1)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    await ann.close()
    await bob.close()
