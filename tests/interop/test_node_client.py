"""The official Node socket.io-client (npm) against a real roomwire server, next to python-socketio.

It proves the wire protocol is plain Socket.IO v5 / Engine.IO v4: what a browser or any other
ecosystem's client speaks, not just the Python client roomwire happens to be tested with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.interop.node_client import NodeClient, require_node
from tests.sio_client import joined_client

pytestmark = pytest.mark.timeout(60)

StartNode = Callable[[], Awaitable[NodeClient]]


@pytest.fixture
async def start_node() -> AsyncIterator[StartNode]:
    node = require_node()
    started: list[NodeClient] = []

    async def start() -> NodeClient:
        client = await NodeClient.start(node)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.close()


def is_presence(kind: str, identity: str) -> Callable[[dict], bool]:
    return lambda line: (
        line.get("event") == "presence"
        and line["data"]["type"] == kind
        and line["data"]["participant"]["identity"] == identity
    )


async def test_node_client_joins_sees_presence_and_signals_both_ways(running, start_node):
    node = await start_node()
    assert await node.connect(running.url, running.token("r1", "nodey", name="Node Y"), ["websocket"]) == "connect"

    ack = await node.call("join")
    assert ack["ok"] is True and ack["room"] == "r1"
    assert set(ack) == {"ok", "room", "self", "participants", "epoch", "offset", "iceServers"}
    assert ack["self"]["identity"] == "nodey" and ack["self"]["name"] == "Node Y"
    assert ack["self"]["transport"] == "websocket" and ack["self"]["tracks"] == []
    assert [p["identity"] for p in ack["participants"]] == ["nodey"]
    assert isinstance(ack["epoch"], str) and ack["offset"] == 1 and ack["iceServers"] == []

    py, py_ack = await joined_client(running.url, running.token("r1", "pyth"))
    assert sorted(p["identity"] for p in py_ack["participants"]) == ["nodey", "pyth"]
    joined = (await node.wait_for(is_presence("join", "pyth")))["data"]
    assert joined["epoch"] == ack["epoch"] and joined["offset"] == 2 and joined["ts"] > 0
    assert joined["participant"]["transport"] == "websocket"

    # Node -> python
    offer = {"sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
    assert await node.call("signal", {"to": "pyth", "type": "offer", "data": offer}) == {"ok": True}
    assert await py.wait_for("signal") == {"from": "nodey", "type": "offer", "data": offer}

    # python -> Node
    candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "sdpMid": "0"}
    assert await py.call("signal", {"to": "nodey", "type": "candidate", "data": candidate}) == {"ok": True}
    got = await node.wait_for(lambda line: line.get("event") == "signal")
    assert got["data"] == {"from": "pyth", "type": "candidate", "data": candidate}

    # an error ack reaches Node in the protocol's one format
    nobody = await node.call("signal", {"to": "ghost", "type": "bye", "data": None})
    assert nobody["ok"] is False and nobody["error"]["code"] == "not_found"
    assert isinstance(nobody["error"]["message"], str)

    await py.close()
    left = (await node.wait_for(is_presence("leave", "pyth")))["data"]
    assert left["offset"] == 3


async def test_node_client_over_polling_only_joins_and_receives_presence(running, start_node):
    node = await start_node()
    connected = await node.connect(running.url, running.token("r1", "poller"), ["polling"])
    assert connected == "connect"
    assert node.lines[-1]["transport"] == "polling"

    ack = await node.call("join")
    assert ack["ok"] is True and ack["self"]["transport"] == "polling"

    py, py_ack = await joined_client(running.url, running.token("r1", "pyth"))
    poller = next(p for p in py_ack["participants"] if p["identity"] == "poller")
    assert poller["transport"] == "polling"
    await node.wait_for(is_presence("join", "pyth"))

    assert await py.call("signal", {"to": "poller", "type": "answer", "data": {"sdp": "x"}}) == {"ok": True}
    got = await node.wait_for(lambda line: line.get("event") == "signal")
    assert got["data"] == {"from": "pyth", "type": "answer", "data": {"sdp": "x"}}
    await py.close()


@pytest.mark.parametrize("token", ["not-a-jwt", None])
async def test_node_client_bad_token_is_refused_with_protocol_error(running, start_node, token):
    node = await start_node()
    assert await node.connect(running.url, token, ["websocket"]) == "connect_error"
    refusal = next(line for line in node.lines if line.get("event") == "connect_error")
    assert refusal["data"] == {"code": "unauthorized", "message": refusal["message"]}
    assert isinstance(refusal["message"], str) and refusal["message"]
    assert running.server.sockets.connections == {}
    assert await running.server.participants("r1") == []


async def test_node_client_that_upgrades_after_joining_is_reported_as_websocket(running, start_node):
    """socket.io-client's default: start on polling, upgrade to WebSocket a moment later."""
    import asyncio

    watcher, _ = await joined_client(running.url, running.token("r1", "watcher"))
    node = await start_node()
    assert await node.connect(running.url, running.token("r1", "upgrader"), ["polling", "websocket"]) == "connect"
    ack = await node.call("join")
    assert ack["ok"] is True
    if ack["self"]["transport"] == "polling":  # joined before the upgrade: presence corrects it
        update = await watcher.wait_for(
            "presence", lambda e: e["type"] == "update" and e["participant"]["identity"] == "upgrader", timeout=10
        )
        assert update["participant"]["transport"] == "websocket"
    for _ in range(100):
        participants = {p["identity"]: p for p in await running.server.participants("r1")}
        if participants["upgrader"]["transport"] == "websocket":
            break
        await asyncio.sleep(0.05)
    assert participants["upgrader"]["transport"] == "websocket"
    await watcher.close()
