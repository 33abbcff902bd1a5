"""The rules behind issue 9, each through a real client: what a hostile client sends is refused
in the protocol's error format and changes nothing, and no connection can be held open or made
to grow the server without limit."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import aiohttp
import jwt
import pytest
from roomwire.signaling.protocol import MAX_JSON_DEPTH
from roomwire.signaling.server import HTTP_IDLE_TIMEOUT
from roomwire.signaling.socketio_internals import SocketLimits

from tests.conftest import SECRET
from tests.raw_socket import RawSocket
from tests.sio_client import joined_client


def nested(depth: int) -> object:
    """A JSON value of `depth` nested objects and arrays (depth 1 is `{}`)."""
    value: object = {}
    for level in range(depth - 1):
        value = [value] if level % 2 else {"a": value}
    return value


async def identities(running, room: str) -> list[str]:
    return sorted(p["identity"] for p in await running.server.participants(room))


async def joined_raw(running, room: str, identity: str) -> RawSocket:
    raw = await RawSocket.open(running.url, running.token(room, identity))
    await raw.connected()
    assert (await raw.call("join", {}))["ok"]
    return raw


async def test_reserved_event_names_are_refused_and_change_nothing(running):
    alice = await joined_raw(running, "r1", "alice")
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    for name in ("disconnect", "connect", "connect_error", "disconnecting", "newListener", "removeListener"):
        ack = await alice.call(name, {}, {"token": running.token("r1", "alice")})
        assert ack["ok"] is False and ack["error"]["code"] == "bad_request", (name, ack)
        assert "reserved" in ack["error"]["message"]
    assert await identities(running, "r1") == ["alice", "bob"]
    # alice is still a member in every sense: she still gets the room's messages
    assert (await bob.call("message", {"data": "still there?"}))["ok"]
    frame = await alice.next_frame()
    assert frame.startswith('42["message"') and "still there?" in frame
    # and when her connection really goes, she leaves (no ghost left by the `connect` event)
    await alice.close()
    left = await bob.wait_for("presence", lambda e: e["type"] == "leave")
    assert left["participant"]["identity"] == "alice"
    assert await identities(running, "r1") == ["bob"]
    await bob.close()


@pytest.mark.parametrize(
    "frame",
    ['[5,{"a":1}]', "[null]", "[true]", "[1.5]", "[]", '{"event":"join"}', '"join"', '[["join"]]',
     # `42<id>-` once read as an event waiting for <id> binary attachments, and never answered
     "-", '-["update",{"name":"x"}]'],
)  # fmt: skip
async def test_event_frames_without_a_string_name_are_answered(running, frame, caplog):
    alice = await joined_raw(running, "r1", "alice")
    with caplog.at_level(logging.INFO):
        ack = await alice.call_raw(frame)
    assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (await alice.call("update", {"name": "still here"}))["ok"]
    await alice.close()


async def test_binary_packets_are_refused_and_do_not_swallow_the_next_frames(running):
    alice = await joined_raw(running, "r1", "alice")
    await alice.send('451-7["update",{"name":"bin"}]')  # would wait for one binary frame
    await alice.send("456[]")  # would wait for none, and refuse every frame after it
    assert (await alice.call("update", {"name": "still here"}))["ok"]
    for ack_id in (7, 6):
        frame = next(f for f in alice.frames if f.startswith(f"43{ack_id}["))
        assert '"code":"bad_request"' in frame and "binary" in frame, frame
    assert await identities(running, "r1") == ["alice"]
    await alice.close()


async def test_an_event_frame_that_cannot_be_read_is_dropped_and_the_socket_stays(running, caplog):
    # an ack id past 100 digits: the packet decoder gives up, and no ack could name it
    alice = await joined_raw(running, "r1", "alice")
    with caplog.at_level(logging.INFO):
        await alice.send("42" + "7" * 101 + '["update",{"name":"unread"}]')
        assert (await alice.call("update", {"name": "still here"}))["ok"]
    assert not [f for f in alice.frames if f.startswith("437")]
    assert [p["name"] for p in await running.server.participants("r1")] == ["still here"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await alice.close()


@pytest.mark.parametrize("depth", [10_000, 1_000, MAX_JSON_DEPTH + 1])
async def test_deeply_nested_json_is_refused_and_the_socket_stays(running, depth, caplog):
    alice = await joined_raw(running, "r1", "alice")
    before = await running.server.participants("r1")
    with caplog.at_level(logging.INFO):
        ack = await alice.call_raw('["update",{"metadata":' + "[" * depth + "]" * depth + "}]")
    assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
    assert await running.server.participants("r1") == before
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (await alice.call("update", {"name": "fine"}))["ok"]
    await alice.close()


async def test_nesting_is_limited_on_every_input(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    too_deep = nested(MAX_JSON_DEPTH)  # one level more than fits inside a payload object
    calls = {
        "update": {"metadata": too_deep},
        "message": {"data": too_deep},
        "signal": {"to": "bob", "type": "offer", "data": too_deep},
    }
    for event, payload in calls.items():
        ack = await alice.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "bad_request", (event, ack)
    # the deepest payload that fits is accepted: the limit is where the docs say it is
    assert (await alice.call("message", {"data": nested(MAX_JSON_DEPTH - 1)}))["ok"]
    with pytest.raises(Exception, match="nests deeper"):
        running.token("r1", "carol", metadata={"deep": too_deep})
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {running.admin_token()}"}) as http:
        async with http.post(f"{running.url}/api/rooms/r1/messages", json={"data": nested(40)}) as response:
            assert response.status == 400 and (await response.json())["error"]["code"] == "bad_request"
        body = {"room": "r1", "identity": "carol", "metadata": {"deep": too_deep}}
        async with http.post(f"{running.url}/api/tokens", json=body) as response:
            assert response.status == 400
    await alice.close()
    await bob.close()


async def test_a_refused_update_leaves_every_reader_of_the_room_working(running):
    """Before: 300 levels (608 bytes) were accepted and REST, long polls and SSE then failed."""
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    ack = await alice.call("update", {"metadata": nested(300)})
    assert ack["error"]["code"] == "bad_request"
    ack = await alice.call("update", {"name": "bad\ud800name"})
    assert ack["error"]["code"] == "bad_request"
    token = running.token("r1", "watcher")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(f"{running.url}/api/rooms/r1") as response:
            assert response.status == 200
            assert (await response.json())["participants"][0]["name"] == "alice"
        async with http.get(f"{running.url}/rooms/r1/presence/poll?timeout=0") as response:
            assert response.status == 200
        async with http.get(f"{running.url}/rooms/r1/presence/sse") as response:
            async with asyncio.timeout(5):
                async for line in response.content:
                    if line.startswith(b"event: snapshot"):
                        break
    await alice.close()


async def test_strings_that_are_not_valid_utf8_are_refused_everywhere(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    await joined_client(running.url, running.token("r1", "bob"))
    lone = "bad\ud800name"
    for event, payload in {
        "update": {"name": lone},
        "message": {"data": {"text": lone}},
        "signal": {"to": "bob", "type": "offer", "data": [lone]},
    }.items():
        ack = await alice.call(event, payload)
        assert ack["error"]["code"] == "bad_request", (event, ack)
    assert (await alice.call("update", {"metadata": {lone: 1}}))["error"]["code"] == "bad_request"
    with pytest.raises(Exception, match="JSON"):
        running.token("r1", "carol", name=lone)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {running.admin_token()}"}) as http:
        body = b'{"data": "bad\\ud800name"}'
        async with http.post(f"{running.url}/api/rooms/r1/messages", data=body) as response:
            assert response.status == 400
    assert [p["name"] for p in await running.server.participants("r1")] == ["alice", "bob"]
    await alice.close()


async def test_the_identity_server_cannot_be_issued_or_used(running):
    with pytest.raises(Exception, match="reserved"):
        running.token("r1", "server")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {running.admin_token()}"}) as http:
        async with http.post(f"{running.url}/api/tokens", json={"room": "r1", "identity": "server"}) as response:
            assert response.status == 400
    # a token signed with the right secret by someone who skipped the rules
    forged = jwt.encode({"sub": "server", "room": "r1", "exp": 2**31}, SECRET)
    raw = await RawSocket.open(running.url, forged)
    with pytest.raises(PermissionError) as refused:
        await raw.connected()
    assert refused.value.args[0]["code"] == "unauthorized" and "reserved" in refused.value.args[0]["message"]
    await raw.close()


async def test_a_member_that_stops_reading_is_dropped_and_the_room_goes_on(make_server):
    running = await make_server(socket_limits=SocketLimits(queued_bytes=256 * 1024))
    sink = await joined_raw(running, "r1", "sink")
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))

    async def keep_ponging() -> None:
        # answers pings it never reads: Engine.IO's own liveness check would not catch it
        while True:
            await sink.send("3")
            await asyncio.sleep(1)

    ponger = asyncio.create_task(keep_ponging())
    chunk = "x" * 60_000
    try:
        async with asyncio.timeout(20):
            while "sink" in await identities(running, "r1"):
                ack = await alice.call("message", {"data": chunk})
                assert ack["ok"] or ack["error"]["code"] == "rate_limited"
                await asyncio.sleep(0.02)
    finally:
        ponger.cancel()
    left = await bob.wait_for("presence", lambda e: e["type"] == "leave")
    assert left["participant"]["identity"] == "sink"
    assert await identities(running, "r1") == ["alice", "bob"]
    assert (await bob.call("message", {"data": "the room goes on"}))["ok"]
    await alice.wait_for("message", lambda m: m["data"] == "the room goes on")
    async with aiohttp.ClientSession() as http, http.get(f"{running.url}/metrics") as response:
        assert 'roomwire_connections_dropped_total{reason="send_queue_full"} 1.0' in await response.text()
    await sink.session.close()
    await alice.close()
    await bob.close()


async def closed_within(raw: RawSocket, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while True:
                await raw.next_frame(timeout=seconds)
    except (ConnectionError, TimeoutError):
        pass
    return raw.ws.closed or raw.ws.close_code is not None


async def test_a_refused_websocket_is_closed_soon_after(make_server):
    running = await make_server()
    raw = await RawSocket.open(running.url, "not a token")
    with pytest.raises(PermissionError):
        await raw.connected()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await closed_within(raw, 5)
    assert loop.time() - started < 4
    await raw.close()


async def test_events_before_the_namespace_connect_are_answered_unauthorized(running):
    raw = await RawSocket.open(running.url, connect=False)
    for body in ('["join",{}]', '["connect",{}]', "[5,{}]", '["join",{'):
        ack = await raw.call_raw(body)
        assert ack == {"ok": False, "error": {"code": "unauthorized", "message": "connect to the namespace first"}}
    await raw.send("40" + json.dumps({"token": running.token("r1", "alice")}))
    await raw.connected()
    assert (await raw.call("join"))["ok"] is True
    await raw.close()


async def test_a_websocket_that_never_connects_a_namespace_is_closed(make_server):
    running = await make_server(socket_limits=SocketLimits(connect_timeout=1.0))
    raw = await RawSocket.open(running.url, connect=False)
    assert await closed_within(raw, 4)
    await raw.close()


async def test_http_connections_that_never_finish_their_headers_are_closed(running):
    port = int(running.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    stalled = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        stalled.append(sock)
    try:
        await asyncio.sleep(HTTP_IDLE_TIMEOUT + 1.5)
        for sock in stalled:
            assert await asyncio.wait_for(loop.sock_recv(sock, 1024), 1) == b""  # closed by the server
    finally:
        for sock in stalled:
            sock.close()
