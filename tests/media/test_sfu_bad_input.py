"""Bad input to the SFU gets a clear error in the protocol's format, and the room keeps working."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket
from roomwire.media.data_relay import MAX_BUFFERED_BYTES
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack

from tests.media.sfu_peer import wait_until

pytestmark = pytest.mark.timeout(60)


def error_code(ack: dict) -> str:
    assert ack["ok"] is False, ack
    assert set(ack["error"]) == {"code", "message"} and ack["error"]["message"]
    return ack["error"]["code"]


async def an_offer(*tracks) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


async def test_malformed_publish_requests_are_refused_and_change_nothing(sfu_server, peers):
    alice = await peers("alice")
    call = alice.client.call
    assert error_code(await call("sfu.publish", {})) == "bad_request"
    assert error_code(await call("sfu.publish", {"sdp": 42})) == "bad_request"
    assert error_code(await call("sfu.publish", {"sdp": "v=0\r\nthis is not sdp"})) == "bad_request"
    assert error_code(await call("sfu.publish", {"sdp": "x" * (200 * 1024)})) == "too_large"
    good = await an_offer(PatternVideoTrack())
    assert error_code(await call("sfu.publish", {"sdp": good, "sources": {"0": "microphone"}})) == "bad_request"
    assert error_code(await call("sfu.publish", {"sdp": good, "sources": ["camera"]})) == "bad_request"
    # an offer whose only video codecs are ones roomwire cannot forward
    no_codec = good.replace("VP8/90000", "VP9/90000").replace("H264/90000", "H265/90000")
    ack = await call("sfu.publish", {"sdp": no_codec})
    assert error_code(ack) == "bad_request" and "codec" in ack["error"]["message"]
    pcmu_only = (await an_offer(ToneAudioTrack())).replace("opus/48000/2", "foo/48000/2")
    assert error_code(await call("sfu.publish", {"sdp": pcmu_only})) == "bad_request"
    assert sfu_server.server.media.publisher("media", "alice") is None
    assert sfu_server.server.media.peer_connections == 0

    # and the same participant can still publish, and be received
    bob = await peers("bob")
    await bob.subscribe()
    assert (await alice.publish([PatternVideoTrack()]))["ok"]
    await bob.wait_video_frames(10)


async def test_malformed_candidates_and_unknown_operations(peers):
    alice = await peers("alice")
    call = alice.client.call
    assert error_code(await call("sfu.candidate", {"pc": "mesh", "candidate": None})) == "bad_request"
    assert error_code(await call("sfu.candidate", {"pc": "publisher", "candidate": "x"})) == "bad_request"
    bad = {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}
    assert error_code(await call("sfu.candidate", {"pc": "publisher", "candidate": bad})) == "bad_request"
    no_mid = {"candidate": "candidate:1 1 udp 1 192.0.2.9 9 typ host"}
    assert error_code(await call("sfu.candidate", {"pc": "publisher", "candidate": no_mid})) == "bad_request"
    assert error_code(await call("sfu.candidate", {"pc": "subscriber", "candidate": None})) == "not_found"
    assert error_code(await call("sfu.unpublish", {"sid": "TR_nope"})) == "not_found"
    assert error_code(await call("sfu.unpublish", {})) == "bad_request"
    assert error_code(await call("sfu.teleport", {})) == "not_found"
    ok = {"candidate": "candidate:1 1 udp 2130706431 192.0.2.9 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    assert (await call("sfu.candidate", {"pc": "publisher", "candidate": ok}))["ok"]
    # buffered until the offer, then applied: publishing still works
    assert (await alice.publish([ToneAudioTrack()]))["ok"]


async def test_a_subscriber_that_never_answers_is_dropped_and_others_carry_on(sfu_server, peers):
    alice = await peers("alice")
    lazy = await peers("lazy", answer=False)
    bob = await peers("bob")
    assert (await alice.publish([PatternVideoTrack()]))["ok"]
    assert (await lazy.subscribe())["ok"]
    assert (await bob.subscribe())["ok"]
    await bob.wait_video_frames(5)
    await wait_until(lambda: sfu_server.server.media.subscriber("media", "lazy") is None, timeout=10)
    assert lazy.offers == 1
    # bob is unaffected, alice can still renegotiate, and lazy may ask again
    count = len(bob.video().counters)
    await bob.wait_video_frames(count + 15)
    assert (await alice.publish([ToneAudioTrack()]))["ok"]
    await wait_until(lambda: bob.track_maps and len(bob.track_maps[-1]) == 2)
    assert (await lazy.subscribe())["ok"]
    await wait_until(lambda: lazy.offers == 2)


async def test_a_publisher_flooding_the_data_channel_cannot_grow_server_memory(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    await bob.subscribe()
    await publish_with_open_channel(alice)
    await wait_until(lambda: bob.offers >= 1)
    await asyncio.sleep(0.5)
    chunk = '"' + "x" * 16000 + '"'
    relay = sfu_server.server.media._rooms["media"].relay
    sink = relay._sinks["bob"]
    alice.publisher_channel.send('"' + "y" * (70 * 1024) + '"')  # over the 64 KiB limit: dropped
    peak = 0
    for i in range(60):
        alice.publisher_channel.send(chunk)
        if i % 20 == 0:
            await asyncio.sleep(0)
            peak = max(peak, sink.channel.bufferedAmount)
    await wait_until(lambda: relay.dropped_from_senders >= 1, timeout=20)
    assert peak <= MAX_BUFFERED_BYTES + 64 * 1024
    # the room still works: a new participant joins and gets an ack
    carol = await peers("carol")
    assert (await carol.subscribe())["ok"]
    await wait_until(lambda: len(bob.data) == 60, timeout=30)


async def test_a_remb_that_lists_more_ssrcs_than_it_holds_is_dropped_and_the_connection_carries_on(peers):
    """aiortc reads as many SSRCs as a REMB's count byte says; a short FCI must not end the
    subscriber connection's RTCP and data channel reader on the server."""
    alice = await peers("alice")
    bob = await peers("bob")
    await bob.subscribe()
    await publish_with_open_channel(alice, PatternVideoTrack())
    await bob.wait_video_frames(5)
    alice.publisher_channel.send('"before"')
    await bob.wait_data(1)

    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"REMB\x05\x01\x00\x00")  # 5 SSRCs, none there
    await bob.subscriber.getTransceivers()[0].receiver.transport._send_rtp(bytes(remb))
    await asyncio.sleep(0.3)
    # 40 messages of 2 KB need the server to read bob's SCTP acknowledgements
    for i in range(40):
        alice.publisher_channel.send('"' + str(i) * 2000 + '"')
    await bob.wait_data(41, timeout=15)


async def test_a_bad_remb_on_a_data_only_connection_does_not_stop_its_data(peers):
    """A connection that carries no media (a publisher of data only) gets the same guard: the
    REMB must not end the server's reader of that connection, or its data stops for good."""
    alice = await peers("alice")
    bob = await peers("bob")
    await bob.subscribe()
    await publish_with_open_channel(alice)
    alice.publisher_channel.send('"before"')
    await bob.wait_data(1)

    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"REMB\x05\x01\x00\x00")  # 5 SSRCs, none there
    await alice.publisher.sctp.transport._send_rtp(bytes(remb))
    await asyncio.sleep(0.3)
    for i in range(10):
        alice.publisher_channel.send(f'"after {i}"')
    await bob.wait_data(11, timeout=15)


async def publish_with_open_channel(peer, *tracks) -> None:
    """`peer` publishes `tracks` and a data channel, and the channel opens."""
    assert (await peer.publish(list(tracks), data=True))["ok"]
    opened = asyncio.Event()
    peer.publisher_channel.on("open", opened.set)
    await asyncio.wait_for(opened.wait(), 10)
