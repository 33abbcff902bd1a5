"""Presence over SSE through a real aiohttp client against a real server (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import jwt
import pytest
from aiohttp import web
from roomwire.signaling import Retention, SignalingServer, presence_sse
from roomwire.signaling.access_log import RedactingAccessLogger
from roomwire.signaling.server import SERVER_KEY

from tests.conftest import SECRET, free_port
from tests.signaling.sse_reader import SSEReader
from tests.sio_client import joined_client

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def sse(url: str, token: str | None = None, **headers: str) -> AsyncIterator[SSEReader]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        yield SSEReader(response)


def sse_url(running, room: str, query: str = "") -> str:
    return f"{running.base}/rooms/{room}/presence/sse{query}"


async def test_snapshot_first_then_one_presence_event_per_log_event(running):
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    async with aiohttp.ClientSession() as session:
        url = sse_url(running, "r1")
        headers = {"Authorization": f"Bearer {running.token('r1', 'viewer')}"}
        async with session.get(url, headers=headers) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["X-Accel-Buffering"] == "no"
            reader = SSEReader(response)
            snapshot = await reader.next()
            assert snapshot is not None and snapshot.event == "snapshot"
            assert snapshot.id == f"{ack['epoch']}:1"
            body = snapshot.json()
            assert body["epoch"] == ack["epoch"] and body["offset"] == 1
            assert [p["identity"] for p in body["participants"]] == ["alice"]
            assert reader.retry == presence_sse.RECONNECT_MS

            bob, _ = await joined_client(running.url, running.token("r1", "bob"))
            await bob.call("update", {"name": "Bob B"})
            await bob.call("leave")
            events = await reader.take(3)
            assert [e.event for e in events] == ["presence"] * 3
            assert [e.id for e in events] == [f"{ack['epoch']}:{n}" for n in (2, 3, 4)]
            assert [e.json()["type"] for e in events] == ["join", "update", "leave"]
            assert all(e.json()["participant"]["identity"] == "bob" for e in events)
            assert events[1].json()["participant"]["name"] == "Bob B"
            assert [e.json()["offset"] for e in events] == [2, 3, 4]
    await alice.close()
    await bob.close()


async def test_last_event_id_resumes_with_exactly_the_missed_events(running):
    token = running.token("r1", "viewer")
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    epoch = ack["epoch"]
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))  # 2
    await bob.call("leave")  # 3
    async with sse(sse_url(running, "r1"), token, **{"Last-Event-ID": f"{epoch}:1"}) as reader:
        events = await reader.take(2)
        assert [(e.event, e.id) for e in events] == [("presence", f"{epoch}:2"), ("presence", f"{epoch}:3")]
        carol, _ = await joined_client(running.url, running.token("r1", "carol"))  # 4, live
        live = await reader.next()
        assert live is not None and (live.event, live.id) == ("presence", f"{epoch}:4")
    # Up to date: nothing is replayed and no snapshot is sent; the next event comes live.
    async with sse(sse_url(running, "r1"), token, **{"Last-Event-ID": f"{epoch}:4"}) as reader:
        await carol.call("leave")  # 5
        event = await reader.next()
        assert event is not None and (event.event, event.id) == ("presence", f"{epoch}:5")
    for client in (alice, bob, carol):
        await client.close()


@pytest.mark.parametrize("last_event_id", ["otherepoch:1", "garbage", "x:-1", "EPOCH:99999", ""])
async def test_unknown_position_gets_a_snapshot(running, last_event_id):
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    last_event_id = last_event_id.replace("EPOCH", ack["epoch"])
    async with sse(sse_url(running, "r1"), running.token("r1", "v"), **{"Last-Event-ID": last_event_id}) as reader:
        first = await reader.next()
        assert first is not None and first.event == "snapshot" and first.id == f"{ack['epoch']}:1"
        assert [p["identity"] for p in first.json()["participants"]] == ["alice"]
    await alice.close()


async def test_position_beyond_retention_gets_a_snapshot_not_a_partial_replay(make_server):
    running = await make_server(retention=Retention(max_events=3))
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))  # 1
    for n in range(3):  # 2..7
        await alice.call("update", {"name": f"a{n}"})
        await alice.call("update", {"name": f"b{n}"})
    # The log holds 5..7: resuming after 4 is complete, after 3 would be partial.
    async with sse(sse_url(running, "r1"), running.token("r1", "v"), **{"Last-Event-ID": f"{ack['epoch']}:4"}) as r:
        assert [e.offset for e in await r.take(3)] == [5, 6, 7]
    async with sse(sse_url(running, "r1"), running.token("r1", "v"), **{"Last-Event-ID": f"{ack['epoch']}:3"}) as r:
        first = await r.next()
        assert first is not None and first.event == "snapshot" and first.json()["offset"] == 7
        assert first.json()["participants"][0]["name"] == "b2"
    await alice.close()


async def test_heartbeat_comment_on_an_idle_stream(running, monkeypatch):
    monkeypatch.setattr(presence_sse, "HEARTBEAT_SECONDS", 0.2)
    async with sse(sse_url(running, "quiet"), running.token("quiet", "v")) as reader:
        first = await reader.next()
        assert first is not None and first.event == "snapshot" and first.json()["participants"] == []
        # An idle stream: next() only returns when the server ends it, so it times out, having read comments.
        with pytest.raises(TimeoutError):
            await reader.next(timeout=1)
        assert reader.comments, "no heartbeat comment within 1 s at a 0.2 s interval"


async def test_default_heartbeat_is_at_most_15_seconds():
    assert 0 < presence_sse.HEARTBEAT_SECONDS <= 15


async def test_token_in_query_and_auth_errors(running):
    async with sse(sse_url(running, "r1", f"?token={running.token('r1', 'v')}")) as reader:
        first = await reader.next()
        assert first is not None and first.event == "snapshot"
    expired = jwt.encode({"sub": "v", "room": "r1", "exp": time.time() - 10}, SECRET, "HS256")
    cases = [
        (sse_url(running, "r1"), {}, 401, "unauthorized"),
        (sse_url(running, "r1", "?token=nonsense"), {}, 401, "unauthorized"),
        (sse_url(running, "r1", f"?token={expired}"), {}, 401, "unauthorized"),
        (sse_url(running, "r1"), {"Authorization": "Basic abc"}, 401, "unauthorized"),
        (sse_url(running, "r2", f"?token={running.token('r1', 'v')}"), {}, 403, "forbidden"),
        (sse_url(running, "bad.room", f"?token={running.token('r1', 'v')}"), {}, 400, "bad_request"),
        (sse_url(running, "r1", f"?token={running.token('r1', 'v')}&presence=maybe"), {}, 400, "bad_request"),
    ]
    async with aiohttp.ClientSession() as session:
        for url, headers, status, code in cases:
            async with session.get(url, headers=headers) as response:
                assert response.status == status, url
                body = await response.json()
                assert body["error"]["code"] == code and isinstance(body["error"]["message"], str)
        async with session.get(sse_url(running, "r1", f"?token={running.admin_token()}")) as response:
            assert response.status == 200  # an admin token watches any room
    assert await running.server.participants("r1") == []


async def test_cors_only_for_configured_origins(make_server):
    running = await make_server(cors_origins=["https://app.example"])
    token = running.token("r1", "v")
    async with aiohttp.ClientSession() as session:
        for origin, allowed in (("https://app.example", True), ("https://evil.example", False)):
            async with session.get(sse_url(running, "r1", f"?token={token}"), headers={"Origin": origin}) as response:
                assert response.status == 200
                assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
                assert allowed or "Access-Control-Allow-Origin" not in response.headers


async def test_present_watcher_joins_and_leaves_within_5_s_of_closing(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    url = sse_url(running, "r1", "?presence=1")
    async with sse(url, running.token("r1", "dash", name="Dashboard")) as reader:
        first = await reader.next()
        assert first is not None and first.event == "snapshot"
        me = next(p for p in first.json()["participants"] if p["identity"] == "dash")
        assert me["transport"] == "sse" and me["name"] == "Dashboard" and me["tracks"] == []
        joined = await alice.wait_for("presence", lambda e: e["participant"]["identity"] == "dash")
        assert joined["type"] == "join" and joined["participant"]["transport"] == "sse"
    closed_at = time.monotonic()
    left = await alice.wait_for(
        "presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "dash", timeout=6
    )
    assert left["participant"]["transport"] == "sse"
    assert time.monotonic() - closed_at < 5.5
    assert [p["identity"] for p in await running.server.participants("r1")] == ["alice"]
    await alice.close()


async def test_quick_reconnect_keeps_the_watcher_present_without_flapping(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    token = running.token("r1", "dash")
    async with sse(sse_url(running, "r1", "?presence=1"), token) as reader:
        first = await reader.next()
        assert first is not None
        last_id = first.id
    async with sse(sse_url(running, "r1", "?presence=1"), token, **{"Last-Event-ID": last_id or ""}) as reader:
        await asyncio.sleep(3)  # past the grace: the first stream's lease would have lapsed by now
        assert {p["identity"] for p in await running.server.participants("r1")} == {"alice", "dash"}
    about_dash = [e["type"] for e in alice.events["presence"] if e["participant"]["identity"] == "dash"]
    assert about_dash == ["join"]
    await alice.close()


async def test_client_disconnect_cleans_up_the_stream(running):
    fallbacks = running.server
    async with sse(sse_url(running, "r1"), running.token("r1", "v")) as reader:
        await reader.next()
        assert len(fallbacks.sse.streams) == 1
    async with asyncio.timeout(5):
        # The handler ends as soon as aiohttp sees the connection close; nothing to await on.
        while fallbacks.sse.streams:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_kicked_watcher_is_told_and_its_stream_ends(running):
    async with sse(sse_url(running, "r1", "?presence=1"), running.token("r1", "dash")) as reader:
        await reader.next()
        assert await running.server.kick("r1", "dash", reason="removed")
        leave = await reader.next()
        assert leave is not None and leave.event == "presence" and leave.json()["type"] == "leave"
        kicked = await reader.next()
        assert kicked is not None and kicked.event == "kicked" and kicked.json() == {"reason": "removed"}
        assert await reader.next() is None
    assert await running.server.participants("r1") == []


async def test_server_side_close_ends_streams_of_one_room(running):
    fallbacks = running.server
    async with (
        sse(sse_url(running, "r1"), running.token("r1", "v")) as one,
        sse(sse_url(running, "r2"), running.token("r2", "v")) as two,
    ):
        await one.next()
        await two.next()
        assert fallbacks.sse.close_streams("r1") == 1
        assert await one.next() is None
        with pytest.raises(TimeoutError):
            await two.next(timeout=0.5)


async def test_tokens_in_query_strings_never_reach_the_logs(caplog):
    # As `roomwire serve` runs it: the redacting access log, everything logged at DEBUG.
    caplog.set_level(logging.DEBUG)
    server = SignalingServer(secret=SECRET)
    app = web.Application()
    server.attach(app)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1, access_log_class=RedactingAccessLogger)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    token = server.issuer.mint(identity="v", room="r1")
    expired = jwt.encode({"sub": "v", "room": "r1", "exp": time.time() - 10}, SECRET, "HS256")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/rooms/r1/presence/sse?token={token}&presence=1") as response:
                assert (await SSEReader(response).next()) is not None
            for query in (f"?token={token}&timeout=0", f"?token={expired}", f"?token={token}&offset=x"):
                async with session.get(f"{base}/rooms/r1/presence/poll{query}") as response:
                    await response.read()
    finally:
        await runner.cleanup()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "token=[redacted]" in logged  # the access log did see these requests
    assert token not in logged and expired not in logged


async def test_closed_stream_is_noticed_without_handler_cancellation():
    # An embedding app with aiohttp's default (no handler cancellation): the stream notices
    # that its client went away by itself, and the present watcher still leaves within 5 s.
    server = SignalingServer(secret=SECRET)
    app = web.Application()
    server.attach(app)
    runner = web.AppRunner(app, handler_cancellation=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        alice, _ = await joined_client(url, server.issuer.mint(identity="alice", room="r1"))
        async with sse(f"{url}/rooms/r1/presence/sse?presence=1", server.issuer.mint(identity="dash", room="r1")) as r:
            await r.next()
        await alice.wait_for(
            "presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "dash", timeout=5.5
        )
        assert not app[SERVER_KEY].sse.streams
        await alice.close()
    finally:
        await runner.cleanup()


async def test_last_event_id_in_the_query_for_polyfills_and_no_head(running):
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))  # 1
    await alice.call("update", {"name": "A"})  # 2
    query = f"?lastEventId={ack['epoch']}:1&token={running.token('r1', 'v')}"
    async with sse(sse_url(running, "r1", query)) as reader:
        event = await reader.next()
        assert event is not None and (event.event, event.id) == ("presence", f"{ack['epoch']}:2")
    async with aiohttp.ClientSession() as session:
        async with session.head(sse_url(running, "r1", query + "&presence=1")) as response:
            assert response.status == 405
    assert [p["identity"] for p in await running.server.participants("r1")] == ["alice"]
    await alice.close()
