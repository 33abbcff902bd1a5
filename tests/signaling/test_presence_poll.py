"""Presence over long polling through a real aiohttp client against a real server (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import pytest
from roomwire.signaling import Retention, presence_watchers

from tests.conftest import SECRET
from tests.sio_client import joined_client

pytestmark = pytest.mark.timeout(60)


async def poll(
    running, room: str, token: str | None, query: str = "", expect: int = 200, **headers: str
) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{running.base}/rooms/{room}/presence/poll{query}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == expect, await response.text()
        return await response.json(), response


async def test_no_position_answers_a_snapshot_at_once(running):
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    async with asyncio.timeout(5):  # timeout=60 must not hold a request that has no position
        body, response = await poll(running, "r1", running.token("r1", "v"), "?timeout=60")
    assert body == {"epoch": ack["epoch"], "offset": 1, "snapshot": {"participants": [ack["self"]]}}
    assert response.headers["Content-Type"].startswith("application/json")
    assert "no-store" in response.headers["Cache-Control"]
    await alice.close()


async def test_behind_answers_the_missed_events_at_once(running):
    token = running.token("r1", "v")
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    await bob.call("leave")
    async with asyncio.timeout(5):
        body, _ = await poll(running, "r1", token, f"?epoch={ack['epoch']}&offset=1&timeout=60")
    assert body["epoch"] == ack["epoch"] and body["offset"] == 3 and "snapshot" not in body
    assert [(e["type"], e["offset"], e["participant"]["identity"]) for e in body["events"]] == [
        ("join", 2, "bob"),
        ("leave", 3, "bob"),
    ]
    await alice.close()
    await bob.close()


async def test_up_to_date_holds_until_the_next_event(running):
    token = running.token("r1", "v")
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    held = asyncio.create_task(poll(running, "r1", token, f"?epoch={ack['epoch']}&offset=1&timeout=30"))
    await asyncio.sleep(0.5)
    assert not held.done()
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    async with asyncio.timeout(5):
        body, _ = await held
    assert body["offset"] == 2 and [e["participant"]["identity"] for e in body["events"]] == ["bob"]
    await alice.close()
    await bob.close()


async def test_timeout_zero_answers_at_once_and_a_short_hold_answers_empty(running):
    token = running.token("r1", "v")
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    position = f"epoch={ack['epoch']}&offset=1"
    async with asyncio.timeout(2):
        body, _ = await poll(running, "r1", token, f"?{position}&timeout=0")
    assert body == {"epoch": ack["epoch"], "offset": 1, "events": []}
    started = time.monotonic()
    body, _ = await poll(running, "r1", token, f"?{position}&timeout=1")
    assert body == {"epoch": ack["epoch"], "offset": 1, "events": []}
    assert time.monotonic() - started >= 0.9  # it did hold
    await alice.close()


async def test_other_epoch_or_lost_position_answers_a_snapshot(make_server):
    running = await make_server(retention=Retention(max_events=2))
    token = running.token("r1", "v")
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    for name in ("a", "b", "c"):
        await alice.call("update", {"name": name})
    for query in ("?epoch=someother&offset=1", f"?epoch={ack['epoch']}&offset=1", f"?epoch={ack['epoch']}&offset=9"):
        body, _ = await poll(running, "r1", token, query + "&timeout=0")
        assert "events" not in body, query
        assert body["offset"] == 4 and [p["name"] for p in body["snapshot"]["participants"]] == ["c"]
    body, _ = await poll(running, "r1", token, f"?epoch={ack['epoch']}&offset=2&timeout=0")
    assert [e["offset"] for e in body["events"]] == [3, 4]
    await alice.close()


@pytest.mark.parametrize(
    "query",
    [
        "?epoch=e&offset=abc",
        "?epoch=e&offset=-1",
        "?epoch=e&offset=1.5",
        "?epoch=bad.epoch&offset=1",
        "?timeout=61",
        "?timeout=-1",
        "?timeout=soon",
        "?timeout=nan",
        "?timeout=inf",
        "?presence=yes",
    ],
)
async def test_malformed_values_are_bad_requests_and_change_nothing(running, query):
    body, _ = await poll(running, "r1", running.token("r1", "v"), query + "&presence=1", expect=400)
    assert body["error"]["code"] == "bad_request" and isinstance(body["error"]["message"], str)
    assert await running.server.participants("r1") == []


async def test_auth_errors(running):
    expired = jwt.encode({"sub": "v", "room": "r1", "exp": time.time() - 10}, SECRET, "HS256")
    other_room = running.token("r2", "v")
    cases = [
        ("r1", None, "", 401, "unauthorized"),
        ("r1", None, "?token=nonsense", 401, "unauthorized"),
        ("r1", None, f"?token={expired}", 401, "unauthorized"),
        ("r1", other_room, "", 403, "forbidden"),
        ("bad.room", running.token("r1", "v"), "", 400, "bad_request"),
    ]
    for room, token, query, status, code in cases:
        body, _ = await poll(running, room, token, query, expect=status)
        assert body["error"]["code"] == code
    body, _ = await poll(running, "r1", None, f"?token={running.token('r1', 'v')}&timeout=0")
    assert "snapshot" in body
    body, _ = await poll(running, "r1", running.admin_token(), "?timeout=0")
    assert "snapshot" in body
    # An admin token without a room has no identity in the room: it cannot be present.
    body, _ = await poll(running, "r1", running.admin_token(), "?timeout=0&presence=1", expect=403)
    assert body["error"]["code"] == "forbidden"


async def test_cors_only_for_configured_origins(make_server):
    running = await make_server(cors_origins=["https://app.example"])
    token = running.token("r1", "v")
    _, response = await poll(running, "r1", token, "?timeout=0", Origin="https://app.example")
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    _, response = await poll(running, "r1", token, "?timeout=0", Origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response.headers
    async with aiohttp.ClientSession() as session:
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
        async with session.options(f"{running.base}/rooms/r1/presence/poll", headers=preflight) as response:
            assert response.status == 204
            assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_one_event_wakes_every_waiter(running):
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    query = f"?epoch={ack['epoch']}&offset=1&timeout=30"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(n: int) -> dict[str, Any]:
            url = f"{running.base}/rooms/r1/presence/poll{query}"
            headers = {"Authorization": f"Bearer {running.token('r1', f'v{n}')}"}
            async with session.get(url, headers=headers) as response:
                return await response.json()

        waiters = [asyncio.create_task(one(n)) for n in range(50)]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in waiters)
        await alice.call("update", {"name": "A"})
        async with asyncio.timeout(10):
            bodies = await asyncio.gather(*waiters)
    assert all(b["offset"] == 2 and [e["type"] for e in b["events"]] == ["update"] for b in bodies)
    await alice.close()


async def test_present_poller_joins_and_leaves_when_the_lease_lapses(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    token = running.token("r1", "widget", name="Widget")
    body, _ = await poll(running, "r1", token, "?presence=1&timeout=0")
    me = next(p for p in body["snapshot"]["participants"] if p["identity"] == "widget")
    assert me["transport"] == "longpoll" and me["name"] == "Widget"
    joined = await alice.wait_for("presence", lambda e: e["participant"]["identity"] == "widget")
    assert joined["type"] == "join"
    last_poll = time.monotonic()
    # No more polls: the lease (timeout 0 + 10 s) lapses and the watcher leaves.
    left = await alice.wait_for(
        "presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "widget", timeout=15
    )
    assert left["participant"]["transport"] == "longpoll"
    assert time.monotonic() - last_poll >= 9.5  # not before the lease lapsed
    await alice.close()


async def test_each_poll_renews_the_lease(running, monkeypatch):
    monkeypatch.setattr(presence_watchers, "POLL_LEASE_MARGIN", 1.5)
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    token = running.token("r1", "widget")
    body, _ = await poll(running, "r1", token, "?presence=1&timeout=0")
    epoch, offset = body["epoch"], body["offset"]
    for _ in range(8):  # 4 s of polls, each lease 1.5 s long
        await asyncio.sleep(0.5)
        body, _ = await poll(running, "r1", token, f"?presence=1&timeout=0&epoch={epoch}&offset={offset}")
        assert body["events"] == []  # nobody left or joined meanwhile
    # A held poll keeps the lease too: it lasts timeout + margin from the poll's arrival.
    body, _ = await poll(running, "r1", token, f"?presence=1&timeout=2&epoch={epoch}&offset={offset}")
    assert body["events"] == []
    left = await alice.wait_for(
        "presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "widget", timeout=5
    )
    assert left["offset"] == offset + 1
    assert [e["type"] for e in alice.events["presence"] if e["participant"]["identity"] == "widget"] == [
        "join",
        "leave",
    ]
    await alice.close()


async def test_a_refused_watcher_gets_403_on_both_endpoints_and_no_presence(running):
    @running.server.on_join
    async def refuse(room: str, participant: dict[str, Any]) -> str | None:
        return "not on the list" if participant["identity"] == "gatecrasher" else None

    token = running.token("r1", "gatecrasher")
    body, _ = await poll(running, "r1", token, "?presence=1&timeout=0", expect=403)
    assert body["error"] == {"code": "forbidden", "message": "not on the list"}
    async with aiohttp.ClientSession() as session:
        url = f"{running.base}/rooms/r1/presence/sse?presence=1&token={token}"
        async with session.get(url) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "forbidden"
    assert await running.server.participants("r1") == []
    body, _ = await poll(running, "r1", token, "?timeout=0")  # watching without presence is allowed
    assert body["snapshot"]["participants"] == []
