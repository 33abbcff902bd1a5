"""Two aiortc peers set up a direct call only through roomwire's `signal` relay."""

from __future__ import annotations

import asyncio

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.sio_client import joined_client


def new_peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def test_aiortc_peers_negotiate_through_signal_and_exchange_data(running):
    alice, _ = await joined_client(running.url, running.token("mesh", "alice"))
    bob, _ = await joined_client(running.url, running.token("mesh", "bob"))
    caller, callee = new_peer(), new_peer()
    received: asyncio.Queue[str] = asyncio.Queue()

    @callee.on("datachannel")
    def on_channel(channel) -> None:
        channel.on("message", received.put_nowait)

    channel = caller.createDataChannel("chat")
    opened = asyncio.Event()
    channel.on("open", opened.set)

    await caller.setLocalDescription(await caller.createOffer())
    offer = caller.localDescription
    assert (await alice.call("signal", {"to": "bob", "type": "offer", "data": {"sdp": offer.sdp}}))["ok"]

    relayed = await bob.wait_for("signal", lambda s: s["type"] == "offer")
    assert relayed["from"] == "alice"
    await callee.setRemoteDescription(RTCSessionDescription(relayed["data"]["sdp"], "offer"))
    await callee.setLocalDescription(await callee.createAnswer())
    answer = {"sdp": callee.localDescription.sdp}
    assert (await bob.call("signal", {"to": "alice", "type": "answer", "data": answer}))["ok"]

    reply = await alice.wait_for("signal", lambda s: s["type"] == "answer")
    assert reply["from"] == "bob"
    await caller.setRemoteDescription(RTCSessionDescription(reply["data"]["sdp"], "answer"))

    await asyncio.wait_for(opened.wait(), 15)
    channel.send("hello over a roomwire-negotiated channel")
    assert await asyncio.wait_for(received.get(), 10) == "hello over a roomwire-negotiated channel"
    assert (await alice.call("signal", {"to": "bob", "type": "bye", "data": None}))["ok"]
    assert (await bob.wait_for("signal", lambda s: s["type"] == "bye"))["from"] == "alice"
    await caller.close()
    await callee.close()
    await alice.close()
    await bob.close()
