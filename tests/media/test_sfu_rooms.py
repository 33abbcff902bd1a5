"""Room behaviour of the SFU: late joiners, data, grants, track lifecycle and renegotiation."""

from __future__ import annotations

import asyncio
import json

import pytest
from roomwire.media.bot import Bot
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack

from tests.media.sfu_peer import wait_until

pytestmark = pytest.mark.timeout(60)


async def test_late_joiner_sees_video_within_a_second(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    assert (await alice.publish([PatternVideoTrack()]))["ok"]
    await bob.subscribe()
    await bob.wait_video_frames(5)
    await asyncio.sleep(2)  # long past alice's first keyframe
    stats = sfu_server.server.media.stats
    plis_before = stats.plis_sent

    carol = await peers("carol")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await carol.subscribe())["ok"]
    video = await carol.wait_video_frames(1, timeout=5)
    assert video.first_counter_at - started < 1.0
    assert stats.plis_sent > plis_before, "the late joiner did not ask for a keyframe"
    # and bob kept going undisturbed
    count = len(bob.video().counters)
    await bob.wait_video_frames(count + 10)


async def test_data_channel_messages_reach_every_other_participant_in_order(peers):
    alice = await peers("alice")
    bob = await peers("bob")
    carol = await peers("carol")
    for peer in (alice, bob, carol):
        assert (await peer.subscribe())["ok"]
    assert (await alice.publish([], data=True))["ok"]
    opened = asyncio.Event()
    alice.publisher_channel.on("open", opened.set)
    await asyncio.wait_for(opened.wait(), 10)
    await wait_until(lambda: all(p.subscriber.sctp and p.offers for p in (bob, carol)))
    await asyncio.sleep(0.5)  # subscriber channels open

    messages = [{"n": i, "text": "x" * (i % 7)} for i in range(100)]
    for message in messages:
        alice.publisher_channel.send(json.dumps(message))
    alice.publisher_channel.send("not json")
    for peer in (bob, carol):
        got = await peer.wait_data(101)
        assert [m["data"] for m in got] == [*messages, "not json"]
        assert {m["from"] for m in got} == {"alice"}
    await asyncio.sleep(0.3)
    assert alice.data == [], "a sender must not get its own data back"


async def test_subscriber_without_subscribe_grant_gets_no_media(sfu_server, peers):
    alice = await peers("alice")
    dave = await peers("dave", grants={"subscribe": False})
    assert (await alice.publish([PatternVideoTrack(), ToneAudioTrack()], data=True))["ok"]
    assert (await dave.subscribe())["ok"]
    await wait_until(lambda: dave.offers >= 1)
    await asyncio.sleep(2)
    assert dave.track_maps == [[]]
    assert "m=video" not in dave.subscriber.remoteDescription.sdp
    assert "m=audio" not in dave.subscriber.remoteDescription.sdp
    assert "m=application" in dave.subscriber.remoteDescription.sdp
    assert not dave.received
    # data still flows to it (it has the data grant)
    opened = asyncio.Event()
    alice.publisher_channel.on("open", opened.set)
    if alice.publisher_channel.readyState != "open":
        await asyncio.wait_for(opened.wait(), 10)
    alice.publisher_channel.send('{"hello": 1}')
    assert (await dave.wait_data(1))[0] == {"from": "alice", "data": {"hello": 1}}


async def test_grants_are_enforced(peers):
    viewer = await peers("viewer", grants={"publish": False, "data": False})
    ack = await viewer.publish([ToneAudioTrack()])
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    mute = await peers("mute", grants={"subscribe": False, "data": False})
    ack = await mute.subscribe()
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    reader = await peers("reader", grants={"publish": False, "data": False})
    ack = await reader.publish([], data=True)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"


async def test_tracks_come_and_go_with_unpublish_and_leave(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    await bob.subscribe()
    ack = await alice.publish([PatternVideoTrack(), ToneAudioTrack()], sources={"0": "screen"})
    assert ack["ok"], ack
    await wait_until(lambda: bob.track_maps and len(bob.track_maps[-1]) == 2)
    by_kind = {t["kind"]: t for t in bob.track_maps[-1]}
    assert by_kind["video"]["source"] == "screen" and by_kind["audio"]["source"] == "microphone"
    published = sorted((t["mid"], t["kind"], t["source"], t["sid"]) for t in ack["tracks"])
    assert published == [
        ("0", "video", "screen", by_kind["video"]["sid"]),
        ("1", "audio", "microphone", by_kind["audio"]["sid"]),
    ]
    presence = await bob.client.wait_for(
        "presence", lambda e: e["type"] == "track" and len(e["participant"]["tracks"]) == 2
    )
    assert {t["sid"] for t in presence["participant"]["tracks"]} == {t["sid"] for t in bob.track_maps[-1]}
    await bob.wait_video_frames(3)

    video_sid = by_kind["video"]["sid"]
    assert (await alice.client.call("sfu.unpublish", {"sid": video_sid}))["ok"]
    await wait_until(lambda: [t["kind"] for t in bob.track_maps[-1]] == ["audio"])
    await bob.client.wait_for("presence", lambda e: e["type"] == "track" and len(e["participant"]["tracks"]) == 1)
    ack = await alice.client.call("sfu.unpublish", {"sid": video_sid})
    assert ack["error"]["code"] == "not_found"

    await alice.client.call("leave")
    await wait_until(lambda: bob.track_maps[-1] == [])
    assert sfu_server.server.media.tracks("media") == []
    assert sfu_server.server.media.publisher("media", "alice") is None


async def test_publisher_renegotiates_to_add_a_track(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    await bob.subscribe()
    assert (await alice.publish([ToneAudioTrack()]))["ok"]
    await wait_until(lambda: bob.track_maps and len(bob.track_maps[-1]) == 1)
    assert (await alice.publish([PatternVideoTrack()]))["ok"]
    await wait_until(lambda: len(bob.track_maps[-1]) == 2)
    await bob.wait_video_frames(10)
    assert len(sfu_server.server.media.tracks("media")) == 2


async def test_a_publisher_connection_that_dies_takes_its_tracks_and_can_be_replaced(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    await bob.subscribe()
    assert (await alice.publish([PatternVideoTrack(), ToneAudioTrack()]))["ok"]
    await wait_until(lambda: bob.track_maps and len(bob.track_maps[-1]) == 2)
    await bob.wait_video_frames(3)
    # the client's connection goes away without a word on the signaling channel
    await alice.publisher.close()
    alice.publisher = None
    await wait_until(lambda: bob.track_maps[-1] == [])
    await bob.client.wait_for("presence", lambda e: e["type"] == "track" and e["participant"]["tracks"] == [])
    assert sfu_server.server.media.publisher("media", "alice") is None
    # a fresh publisher connection works. Count bob's tracks before publishing: the SFU
    # renegotiates bob while alice's publish is still being acked and applied, so bob may
    # record the new track map and get its `track` event before publish() returns.
    before = len(bob.received)
    assert (await alice.publish([PatternVideoTrack()]))["ok"]
    await wait_until(lambda: len(bob.track_maps[-1]) == 1)
    await wait_until(lambda: len(bob.received) > before)
    new_mid = bob.track_maps[-1][0]["mid"]
    await wait_until(lambda: new_mid in bob.received and len(bob.received[new_mid].counters) >= 3)


async def test_a_kicked_publisher_is_removed_from_every_subscriber(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    await bob.subscribe()
    assert (await alice.publish([ToneAudioTrack()]))["ok"]
    await wait_until(lambda: bob.track_maps and len(bob.track_maps[-1]) == 1)
    assert await sfu_server.server.kick("media", "alice")
    await wait_until(lambda: bob.track_maps[-1] == [])
    assert sfu_server.server.media.tracks("media") == []


async def test_withdraw_and_republish_on_the_same_transceiver_reaches_subscribers_within_a_second(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    assert (await bob.subscribe())["ok"]
    assert (await alice.publish([PatternVideoTrack()]))["ok"]
    await bob.wait_video_frames(30)
    [transceiver] = alice.publisher.getTransceivers()
    transceiver.direction = "inactive"
    ack = await alice.republish()
    assert ack["ok"] and ack["tracks"] == []
    await wait_until(lambda: bob.track_maps[-1] == [])
    await asyncio.sleep(1)

    transceiver.direction = "sendonly"  # the same transceiver, the same SSRC, sequence numbers going on
    loop = asyncio.get_running_loop()
    started = loop.time()
    ack = await alice.republish()
    assert ack["ok"] and len(ack["tracks"]) == 1
    sid = ack["tracks"][0]["sid"]
    await wait_until(lambda: [t["sid"] for t in bob.track_maps[-1]] == [sid])
    mid = bob.track_maps[-1][0]["mid"]
    await wait_until(lambda: mid in bob.received and bob.received[mid].counters, timeout=5)
    assert bob.received[mid].first_counter_at - started < 1.0


async def test_a_bot_leaving_makes_one_offer_per_subscriber(sfu_server, peers):
    subscribers = [await peers(name) for name in ("bob", "carol")]
    for subscriber in subscribers:
        assert (await subscriber.subscribe())["ok"]
    async with Bot.connect(sfu_server.url, sfu_server.token("media", "pattern")) as bot:
        await bot.publish(PatternVideoTrack(320, 240), ToneAudioTrack())
        for subscriber in subscribers:
            await wait_until(lambda s=subscriber: s.track_maps and len(s.track_maps[-1]) == 2)
            await subscriber.wait_video_frames(5)
        await asyncio.sleep(1)
        before = [subscriber.offers for subscriber in subscribers]
    # the bot closed its connections (an RTCP BYE per track, then DTLS), then its socket
    for subscriber in subscribers:
        await wait_until(lambda s=subscriber: s.track_maps[-1] == [])
    await asyncio.sleep(1.5)
    assert [s.offers - n for s, n in zip(subscribers, before, strict=True)] == [1, 1]
