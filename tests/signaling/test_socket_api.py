"""Socket.IO signaling through a real python-socketio client against a real server."""

from __future__ import annotations

import asyncio

import pytest
import socketio

from tests.sio_client import SioClient, joined_client, nothing_else_arrives


async def test_join_returns_snapshot_and_presence_reaches_others(running):
    alice, ack = await joined_client(running.url, running.token("r1", "alice", name="Alice"))
    assert ack["room"] == "r1"
    assert ack["self"]["identity"] == "alice" and ack["self"]["name"] == "Alice"
    assert ack["self"]["transport"] == "websocket"
    assert [p["identity"] for p in ack["participants"]] == ["alice"]
    assert ack["offset"] == 1 and isinstance(ack["epoch"], str) and ack["iceServers"] == []

    bob, bob_ack = await joined_client(running.url, running.token("r1", "bob"))
    assert sorted(p["identity"] for p in bob_ack["participants"]) == ["alice", "bob"]
    event = await alice.wait_for("presence", lambda e: e["type"] == "join" and e["participant"]["identity"] == "bob")
    assert event["epoch"] == ack["epoch"] and event["offset"] == 2 and event["ts"] > 0

    assert (await bob.call("leave")) == {"ok": True}
    left = await alice.wait_for("presence", lambda e: e["type"] == "leave")
    assert left["participant"]["identity"] == "bob" and left["offset"] == 3
    await alice.close()
    await bob.close()


async def test_update_changes_name_and_metadata(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    ack = await alice.call("update", {"name": "Alice B", "metadata": {"role": "host"}})
    assert ack["ok"] and ack["self"]["name"] == "Alice B" and ack["self"]["metadata"] == {"role": "host"}
    event = await alice.wait_for("presence", lambda e: e["type"] == "update")
    assert event["participant"]["name"] == "Alice B"
    bad = await alice.call("update", {"metadata": {"x": "y" * 5000}})
    assert bad["error"]["code"] == "too_large"
    assert (await alice.call("update", {"name": 5}))["error"]["code"] == "bad_request"
    assert (await alice.call("update", {}))["error"]["code"] == "bad_request"
    participants = await running.server.participants("r1")
    assert participants[0]["name"] == "Alice B"
    await alice.close()


async def test_signal_relays_within_room_only(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    eve, _ = await joined_client(running.url, running.token("r2", "eve"))

    ack = await alice.call("signal", {"to": "bob", "type": "offer", "data": {"sdp": "v=0"}})
    assert ack == {"ok": True}
    got = await bob.wait_for("signal")
    assert got == {"from": "alice", "type": "offer", "data": {"sdp": "v=0"}}

    wrong_room = await eve.call("signal", {"to": "bob", "type": "offer", "data": {}})
    assert wrong_room["error"]["code"] == "not_found"
    nobody = await alice.call("signal", {"to": "nobody", "type": "offer", "data": {}})
    assert nobody["error"]["code"] == "not_found"
    bad_type = await alice.call("signal", {"to": "bob", "type": "hello", "data": {}})
    assert bad_type["error"]["code"] == "bad_request"
    huge = await alice.call("signal", {"to": "bob", "type": "candidate", "data": "x" * 70000})
    assert huge["error"]["code"] == "too_large"
    await nothing_else_arrives(running, "r1", "bob", bob)
    await nothing_else_arrives(running, "r2", "eve", eve)
    assert len(bob.events["signal"]) == 1 and not eve.events["signal"]
    for client in (alice, bob, eve):
        await client.close()


async def test_message_fans_out_to_others_and_to_one(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    carol, _ = await joined_client(running.url, running.token("r1", "carol"))
    outsider, _ = await joined_client(running.url, running.token("r2", "olga"))

    ack = await alice.call("message", {"data": {"text": "hi all"}})
    assert ack["ok"] and isinstance(ack["id"], str)
    for client in (bob, carol):
        msg = await client.wait_for("message")
        assert msg["id"] == ack["id"] and msg["from"] == "alice" and msg["data"] == {"text": "hi all"}
    direct = await alice.call("message", {"to": "bob", "data": "psst"})
    assert direct["ok"]
    await bob.wait_for("message", lambda m: m["data"] == "psst")
    for client, room, identity in ((carol, "r1", "carol"), (alice, "r1", "alice"), (outsider, "r2", "olga")):
        await nothing_else_arrives(running, room, identity, client)
    assert [m["data"] for m in carol.events["message"]] == [{"text": "hi all"}]
    assert not alice.events["message"] and not outsider.events["message"]
    too_big = await alice.call("message", {"data": "x" * (64 * 1024 + 1)})
    assert too_big["error"]["code"] == "too_large"
    for client in (alice, bob, carol, outsider):
        await client.close()


async def test_message_needs_data_grant(running):
    muted, _ = await joined_client(running.url, running.token("r1", "m", grants={"data": False}))
    ack = await muted.call("message", {"data": "x"})
    assert ack["error"]["code"] == "forbidden"
    await muted.close()


async def test_second_connection_replaces_first_with_update(running):
    first, _ = await joined_client(running.url, running.token("r1", "alice"))
    watcher, _ = await joined_client(running.url, running.token("r1", "bob"))
    second, ack = await joined_client(running.url, running.token("r1", "alice"))
    assert sorted(p["identity"] for p in ack["participants"]) == ["alice", "bob"]
    kicked = await first.wait_for("kicked")
    assert kicked == {"reason": "replaced"}
    await asyncio.wait_for(first.disconnected.wait(), 5)
    event = await watcher.wait_for("presence", lambda e: e["participant"]["identity"] == "alice" and e["offset"] > 2)
    assert event["type"] == "update"
    # a later event of the log reaches the watcher after any leave of alice's would have
    await watcher.call("update", {"name": "Bob"})
    await watcher.wait_for("presence", lambda e: e["participant"]["identity"] == "bob" and e["type"] == "update")
    types = [e["type"] for e in watcher.events["presence"] if e["participant"]["identity"] == "alice"]
    assert "leave" not in types
    assert sorted(p["identity"] for p in await running.server.participants("r1")) == ["alice", "bob"]
    await second.close()
    await watcher.close()


async def test_bad_input_gets_errors_and_changes_nothing(running):
    alice, ack = await joined_client(running.url, running.token("r1", "alice"))
    offset = ack["offset"]
    assert (await alice.call("join"))["error"]["code"] == "conflict"
    assert (await alice.call("nonsense", {}))["error"]["code"] == "bad_request"
    assert (await alice.sio.call("signal", "not an object", timeout=5))["error"]["code"] == "bad_request"
    assert (await alice.call("signal", {"to": 7, "type": "offer", "data": 1}))["error"]["code"] == "bad_request"
    assert (await alice.call("signal", {"to": "alice", "type": "offer", "data": 1}))["error"]["code"] == "bad_request"
    assert (await alice.call("message", {}))["error"]["code"] == "bad_request"
    assert (await alice.call("sfu.publish", {"sdp": "x"}))["error"]["code"] == "not_found"
    snapshot = await running.server.backend.snapshot("r1")
    assert snapshot.offset == offset and [p["identity"] for p in snapshot.participants] == ["alice"]
    # the connection still works
    assert (await alice.call("update", {"name": "ok"}))["ok"]
    await alice.close()


async def test_join_naming_another_room_is_forbidden(running):
    client = SioClient()
    await client.connect(running.url, running.token("r1", "alice"))
    refused = await client.call("join", {"room": "r2"})
    assert refused["error"]["code"] == "forbidden"
    assert await running.server.participants("r2") == [] and await running.server.participants("r1") == []
    assert (await client.call("join", {"room": "r1"}))["ok"]
    await client.close()


async def test_events_before_join_are_refused(running):
    client = SioClient()
    await client.connect(running.url, running.token("r1", "alice"))
    for event in ("leave", "update", "signal", "message"):
        assert (await client.call(event, {"data": 1}))["error"]["code"] == "conflict"
    await client.close()


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"ttl": 1}, "unauthorized"),
        ("wrong-signature", "unauthorized"),
        ("not-yet-valid", "unauthorized"),
        ("admin-without-room", "forbidden"),
        (None, "unauthorized"),
    ],
)
async def test_bad_tokens_are_refused_at_connect(running, claims, code):
    import time

    import jwt

    if claims == {"ttl": 1}:
        token = running.token("r1", "alice", ttl=1)
        await asyncio.sleep(2.1)
    elif claims == "wrong-signature":
        claims = {"sub": "a", "room": "r1", "exp": time.time() + 60}
        token = jwt.encode(claims, "another-secret-xxxxxxxxxxxxxxxxxxxxxxxx", "HS256")
    elif claims == "not-yet-valid":
        token = jwt.encode(
            {"sub": "a", "room": "r1", "exp": time.time() + 600, "nbf": time.time() + 300},
            "test-secret-0123456789-abcdefghij",
            "HS256",
        )
    elif claims == "admin-without-room":
        token = running.admin_token()
    else:
        token = None
    client = SioClient()
    with pytest.raises(socketio.exceptions.ConnectionError) as refused:
        await client.connect(running.url, token)
    assert refused.value is not None
    refusal = client.events["connect_error"][0]
    assert refusal["data"]["code"] == code and refusal["data"]["message"] == refusal["message"]
    assert running.server.sockets.connections == {}


async def test_flood_is_rate_limited_and_others_unaffected(make_server):
    from roomwire.signaling import RateLimit

    running = await make_server(rate_limit=RateLimit(rate=5, burst=10))
    flooder, _ = await joined_client(running.url, running.token("r1", "flood"))
    calm, _ = await joined_client(running.url, running.token("r1", "calm"))
    acks = await asyncio.gather(*(flooder.call("message", {"data": i}) for i in range(40)))
    codes = [a["error"]["code"] for a in acks if not a["ok"]]
    assert codes and set(codes) == {"rate_limited"}
    assert (await calm.call("message", {"data": "still here"}))["ok"]
    await flooder.close()
    await calm.close()


async def test_a_signal_flood_is_rate_limited_and_only_what_was_accepted_is_relayed(make_server):
    # signals run eagerly on one node (socketio_internals/eager.py): the same guard holds there
    from roomwire.signaling import RateLimit

    running = await make_server(rate_limit=RateLimit(rate=5, burst=10))
    flooder, _ = await joined_client(running.url, running.token("r1", "flood"))
    peer, _ = await joined_client(running.url, running.token("r1", "peer"))
    acks = await asyncio.gather(
        *(flooder.call("signal", {"to": "peer", "type": "candidate", "data": i}) for i in range(40))
    )
    accepted = [i for i, ack in enumerate(acks) if ack["ok"]]
    assert {a["error"]["code"] for a in acks if not a["ok"]} == {"rate_limited"} and accepted
    await peer.wait_for("signal", lambda s: s["data"] == accepted[-1])
    assert [s["data"] for s in peer.events["signal"]] == accepted
    await flooder.close()
    await peer.close()


async def test_engineio_packet_over_one_mib_closes_only_that_connection(running):
    big, _ = await joined_client(running.url, running.token("r1", "big"))
    other, _ = await joined_client(running.url, running.token("r1", "other"))
    await big.sio.emit("message", {"data": "x" * (1024 * 1024 + 10)})
    await asyncio.wait_for(big.disconnected.wait(), 10)
    assert (await other.call("message", {"data": "fine"}))["ok"]
    await other.close()
