"""50 join/publish/leave cycles leave no peer connection, task, thread or UDP socket behind."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import psutil
import pytest
from aiortc import RTCPeerConnection
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack

from tests.media.sfu_peer import SfuPeer, wait_until

CYCLES = 50


def census() -> dict[str, int]:
    gc.collect()
    return {
        "peer_connections": sum(isinstance(o, RTCPeerConnection) for o in gc.get_objects()),
        "tasks": len(asyncio.all_tasks()),
        # the loop's default executor (aiortc's encoders run there) is a bounded pool that stays
        "threads": sum(not t.name.startswith("asyncio_") for t in threading.enumerate()),
        "udp_sockets": len(psutil.Process().net_connections(kind="udp")),
    }


async def settle(expected: dict[str, int], timeout: float = 15) -> dict[str, int]:
    """Closing is asynchronous (ICE, DTLS, RTCP tasks wind down): poll until it is done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        now = census()
        if all(now[key] <= expected[key] for key in expected) or loop.time() > deadline:
            return now
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_join_publish_leave_cycles_leak_nothing(sfu_server):
    sfu = sfu_server.server.media
    watcher = SfuPeer("watcher")
    await watcher.join(sfu_server.url, sfu_server.token("leak", "watcher"))
    await watcher.subscribe()
    await wait_until(lambda: watcher.offers >= 1)

    async def cycle(i: int) -> None:
        peer = SfuPeer(f"p{i}")
        await peer.join(sfu_server.url, sfu_server.token("leak", f"p{i}"))
        ack = await peer.publish([PatternVideoTrack(), ToneAudioTrack()], data=True)
        assert ack["ok"], ack
        await wait_until(lambda: any(t["identity"] == f"p{i}" for t in watcher.track_maps[-1]))
        await wait_until(lambda: sfu.publisher("leak", f"p{i}").pc.connectionState == "connected")
        assert (await peer.client.call("leave"))["ok"]
        await peer.close()

    await cycle(-1)  # warm up: lazily created pools and caches are not leaks
    await wait_until(lambda: watcher.track_maps[-1] == [])
    baseline = await settle(census(), timeout=2)

    for i in range(CYCLES):
        await cycle(i)
    await wait_until(lambda: watcher.track_maps[-1] == [], timeout=20)
    after = await settle(baseline)
    assert after == baseline or all(after[k] <= baseline[k] for k in baseline), (baseline, after)
    assert sfu.peer_connections == 1  # the watcher's subscriber connection
    assert sfu.tracks("leak") == []
    assert watcher.offers >= CYCLES  # every cycle really renegotiated the watcher

    server_side = weakref.ref(sfu.subscriber("leak", "watcher").pc)
    await watcher.close()
    # the watcher object (still referenced here) keeps its own closed client connection
    final = await settle({**baseline, "peer_connections": baseline["peer_connections"] - 1})
    assert final["peer_connections"] <= baseline["peer_connections"] - 1, final
    assert server_side() is None
    assert sfu.peer_connections == 0
