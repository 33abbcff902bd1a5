"""Requests between nodes with acks: a node calls a connection held by another node (as the SFU
does with `sfu.offer`) and gets the connection's answer; when that node dies between request and
reply, the caller gets a protocol error within the timeout, not a hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from roomwire.signaling import SignalingServer
from roomwire.signaling.protocol import ProtocolError
from roomwire.signaling.redis_backend import RedisBackend

from tests.conftest import SECRET, RunningServer, start_app
from tests.node_process import NodeProcess
from tests.signaling.redis_server import RedisProcess
from tests.sio_client import joined_client

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def caller(redis_process: RedisProcess) -> AsyncIterator[RunningServer]:
    server = SignalingServer(secret=SECRET, backend=RedisBackend(redis_process.url))
    app = web.Application()
    server.attach(app)
    runner, url = await start_app(app)
    yield RunningServer(url=url, server=server, app=app)
    await runner.cleanup()


@pytest.fixture
async def other_node(redis_process: RedisProcess) -> AsyncIterator[NodeProcess]:
    node = await NodeProcess(redis_process.url).start()
    yield node
    await node.stop()


async def test_a_call_to_another_nodes_connection_returns_its_ack(caller: RunningServer, other_node) -> None:
    client, _ = await joined_client(other_node.url, caller.token("r", "sub"))
    offers: list[Any] = []

    async def answer(offer: Any) -> dict[str, Any]:
        offers.append(offer)
        return {"sdp": "v=0 answer"}

    client.sio.on("sfu.offer", answer)
    member = await caller.server.backend.membership("r", "sub")
    assert member is not None and member.node == other_node.node_id
    reply = await caller.server.courier.call(member, "sfu.offer", {"sdp": "v=0 offer", "tracks": []}, timeout=5)
    assert reply == {"sdp": "v=0 answer"} and offers == [{"sdp": "v=0 offer", "tracks": []}]
    await client.close()


async def test_a_node_that_dies_before_replying_costs_the_caller_an_error_not_a_hang(
    caller: RunningServer, other_node
) -> None:
    client, _ = await joined_client(other_node.url, caller.token("r", "slow"))
    asked = asyncio.Event()

    async def never_answer(offer: Any) -> dict[str, Any]:
        asked.set()
        await asyncio.sleep(30)
        return {"sdp": "too late"}

    client.sio.on("sfu.offer", never_answer)
    member = await caller.server.backend.membership("r", "slow")
    assert member is not None
    loop = asyncio.get_running_loop()
    call = asyncio.create_task(caller.server.courier.call(member, "sfu.offer", {"sdp": "v=0"}, timeout=4))
    await asyncio.wait_for(asked.wait(), 5)  # the request reached the other node and its client
    other_node.kill()
    started = loop.time()
    with pytest.raises(ProtocolError) as failed:
        await call
    assert failed.value.code == "unavailable"
    assert loop.time() - started < 4 + 2 + 1  # the call's timeout and the margin for the hop
    await client.sio.disconnect()


async def test_entries_a_node_cannot_read_in_its_inbox_are_skipped_and_it_goes_on_serving(
    caller: RunningServer, other_node
) -> None:
    """One bad entry (another release's, or a stray XADD) must not end the node's inbox reader."""
    client, _ = await joined_client(other_node.url, caller.token("r", "sub"))
    client.sio.on("sfu.offer", lambda offer: {"sdp": "v=0 answer"})
    member = await caller.server.backend.membership("r", "sub")
    assert member is not None
    inbox = caller.server.backend.inbox
    key = inbox.key(other_node.node_id)
    for fields in ({"x": "no command"}, {"c": "not json"}, {"c": "[1, 2]"}, {"c": '{"op": "call", "rid": "r1"}'}):
        await inbox.link.redis.xadd(key, fields)
    reply = await caller.server.courier.call(member, "sfu.offer", {"sdp": "v=0 offer"}, timeout=5)
    assert reply == {"sdp": "v=0 answer"}
    await client.close()
