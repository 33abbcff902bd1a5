"""1,000 rapid connect/join/disconnect cycles leave no connection, task, participant or object behind."""

from __future__ import annotations

import asyncio
import gc

import pytest
import socketio
from roomwire.signaling import Retention

from tests.sio_client import SioClient


async def churn(url: str, tokens: list[str], concurrency: int = 25) -> None:
    async def one(token: str) -> None:
        client = SioClient()
        await client.connect(url, token)
        assert (await client.call("join"))["ok"]
        await client.close()

    for start in range(0, len(tokens), concurrency):
        await asyncio.gather(*(one(token) for token in tokens[start : start + concurrency]))


async def settle(running, tasks: int = 10**9) -> None:
    """Give closing handshakes (both sides live in this process) a moment to finish."""
    for _ in range(200):
        if (
            len(running.server.sockets.connections) == 1
            and len(running.server.sio.eio.sockets) == 1
            and len(asyncio.all_tasks()) <= tasks
        ):
            return
        await asyncio.sleep(0.05)


def live_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def caught_up(client: socketio.AsyncClient) -> None:
    """Until the client has read everything the server sent it before now (an ack comes after
    it): what it has not read is its memory, not the server's."""
    assert (await client.call("message", {"data": "caught up?"}))["ok"]


@pytest.mark.timeout(180)
async def test_thousand_connect_disconnect_cycles_leak_nothing(make_server):
    # a small presence log fills during the warm-up, so from then on its size is constant
    # a long pong timeout: the steady client shares this process with 1,000 others and a busy
    # machine must not make it miss one (this test is about leaks; liveness has tests of its own)
    running = await make_server(retention=Retention(max_events=100), ping_timeout=20)
    steady = socketio.AsyncClient(reconnection=False)  # records nothing: its memory must not count
    await steady.connect(running.url, auth={"token": running.token("churn", "steady")}, transports=["websocket"])
    assert (await steady.call("join", {}))["ok"]
    tokens = [running.token("churn", f"user{i % 50}") for i in range(1100)]
    await churn(running.url, tokens[:100])
    await settle(running)
    await caught_up(steady)
    tasks_before = len(asyncio.all_tasks())
    objects_before = live_objects()

    await churn(running.url, tokens[100:])
    await settle(running, tasks_before)
    await caught_up(steady)
    growth = live_objects() - objects_before

    assert list(running.server.sockets.connections) == [steady.get_sid()]
    assert len(running.server.sio.eio.sockets) == 1
    assert [p["identity"] for p in await running.server.participants("churn")] == ["steady"]
    leftover = list(asyncio.all_tasks())
    assert len(leftover) <= tasks_before, sorted({str(t.get_coro()) for t in leftover})[:20]
    assert growth < 300, f"{growth} more live objects after 1,000 cycles"
    assert (await steady.call("message", {"data": "still here"}))["ok"]
    await steady.disconnect()
