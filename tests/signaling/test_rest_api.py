"""The REST API over real HTTP against a real server."""

from __future__ import annotations

import aiohttp
import pytest

from tests.sio_client import joined_client, nothing_else_arrives


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_healthz_and_metrics(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    await alice.call("message", {"data": 1})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.url}/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
        async with http.get(f"{running.url}/metrics") as resp:
            text = await resp.text()
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert "roomwire_connections 1.0" in text
    assert "roomwire_rooms 1.0" in text and "roomwire_participants 1.0" in text
    assert 'roomwire_events_in_total{event="message"} 1.0' in text
    await alice.close()


async def test_admin_mints_tokens_that_connect(running):
    async with aiohttp.ClientSession() as http:
        body = {"room": "r9", "identity": "zed", "name": "Zed", "grants": {"publish": False}, "ttl": 60}
        async with http.post(f"{running.url}/api/tokens", json=body, headers=bearer(running.admin_token())) as resp:
            assert resp.status == 200
            token = (await resp.json())["token"]
        claims = running.server.issuer.verify(token)
        assert (claims.identity, claims.room, claims.name, claims.grants.publish) == ("zed", "r9", "Zed", False)
        async with http.post(f"{running.url}/api/tokens", json=body, headers=bearer(token)) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
        async with http.post(f"{running.url}/api/tokens", json=body) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
        bad = {"room": "no spaces", "identity": "x"}
        async with http.post(f"{running.url}/api/tokens", json=bad, headers=bearer(running.admin_token())) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
        async with http.post(
            f"{running.url}/api/tokens", data=b"not json", headers=bearer(running.admin_token())
        ) as resp:
            assert resp.status == 400


async def test_rooms_listing_detail_kick_and_message(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    admin = bearer(running.admin_token())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.url}/api/rooms", headers=admin) as resp:
            rooms = (await resp.json())["rooms"]
        assert [(r["name"], r["participants"]) for r in rooms] == [("r1", 2)] and rooms[0]["createdAt"] > 0
        async with http.get(f"{running.url}/api/rooms", headers=bearer(running.token("r1", "alice"))) as resp:
            assert resp.status == 403

        async with http.get(f"{running.url}/api/rooms/r1", headers=bearer(running.token("r1", "x"))) as resp:
            detail = await resp.json()
        assert detail["name"] == "r1" and detail["offset"] == 2
        assert sorted(p["identity"] for p in detail["participants"]) == ["alice", "bob"]
        async with http.get(f"{running.url}/api/rooms/r1", headers=bearer(running.token("r2", "x"))) as resp:
            assert resp.status == 403
        async with http.get(f"{running.url}/api/rooms/nope", headers=admin) as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"

        async with http.post(f"{running.url}/api/rooms/r1/messages", json={"data": {"n": 1}}, headers=admin) as resp:
            message_id = (await resp.json())["id"]
        for client in (alice, bob):
            msg = await client.wait_for("message")
            assert msg["id"] == message_id and msg["from"] == "server" and msg["data"] == {"n": 1}
        huge = {"data": "x" * (65 * 1024)}
        async with http.post(f"{running.url}/api/rooms/r1/messages", json=huge, headers=admin) as resp:
            assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"

        async with http.delete(f"{running.url}/api/rooms/r1/participants/bob", headers=admin) as resp:
            assert resp.status == 204
        assert await bob.wait_for("kicked") == {"reason": "removed"}
        left = await alice.wait_for("presence", lambda e: e["type"] == "leave")
        assert left["participant"]["identity"] == "bob"
        async with http.delete(f"{running.url}/api/rooms/r1/participants/bob", headers=admin) as resp:
            assert resp.status == 404
    assert [p["identity"] for p in await running.server.participants("r1")] == ["alice"]
    await alice.close()


@pytest.mark.parametrize("dev", [False, True])
async def test_dev_token_route_exists_only_in_dev_mode(make_server, dev):
    running = await make_server(dev=dev)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{running.url}/api/dev/token", json={"room": "r1", "name": "Ann Lee"}) as resp:
            if not dev:
                assert resp.status == 404
                return
            assert resp.status == 200
            body = await resp.json()
        claims = running.server.issuer.verify(body["token"])
        assert claims.identity == body["identity"] and body["identity"].startswith("ann-lee-")
        assert claims.room == "r1" and claims.name == "Ann Lee" and not claims.grants.admin
        async with http.post(f"{running.url}/api/dev/token", json={"room": "../etc"}) as resp:
            assert resp.status == 400


async def test_cors_only_for_configured_origins(make_server):
    running = await make_server(cors_origins=["https://app.example"])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.url}/healthz", headers={"Origin": "https://app.example"}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.get(f"{running.url}/healthz", headers={"Origin": "https://evil.example"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        async with http.options(f"{running.url}/api/tokens", headers=preflight) as resp:
            assert resp.status == 204 and "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    default = await make_server()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{default.url}/healthz", headers={"Origin": "https://app.example"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers


async def test_bad_rest_input_gets_protocol_errors_and_changes_nothing(make_server):
    import asyncio

    running = await make_server(dev=True)
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    admin = bearer(running.admin_token())
    expired = running.token(None, "ops", grants={"admin": True}, ttl=1)
    await asyncio.sleep(1.1)
    cases = [
        ("GET", "/api/rooms/bad%20room", admin, None, 400, "bad_request"),
        ("POST", "/api/rooms/r1/messages", admin, {"to": "alice"}, 400, "bad_request"),
        ("POST", "/api/rooms/r1/messages", admin, {"data": 1, "to": 7}, 400, "bad_request"),
        ("POST", "/api/rooms/r1/messages", admin, {"data": 1, "to": "ghost"}, 404, "not_found"),
        ("POST", "/api/rooms/r1/messages", admin, [1, 2], 400, "bad_request"),
        ("GET", "/api/rooms", bearer(expired), None, 401, "unauthorized"),
        ("GET", "/api/rooms", {"Authorization": "Basic YWRtaW46eA=="}, None, 401, "unauthorized"),
        ("POST", "/api/tokens", admin, {"room": "r1", "identity": "x", "ttl": 10**9}, 400, "bad_request"),
        ("POST", "/api/tokens", admin, {"room": "r1", "identity": "x", "grants": {"root": True}}, 400, "bad_request"),
        ("POST", "/api/dev/token", {}, {"room": "r1", "name": "n" * 129}, 400, "bad_request"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, headers, body, status, code in cases:
            async with http.request(method, running.url + path, headers=headers, json=body) as resp:
                assert (resp.status, (await resp.json())["error"]["code"]) == (status, code), (method, path, body)
    snapshot = await running.server.backend.snapshot("r1")
    assert snapshot.offset == 1 and [p["identity"] for p in snapshot.participants] == ["alice"]
    await nothing_else_arrives(running, "r1", "alice", alice)
    assert not alice.events["message"]
    await alice.close()
