"""Fuzz (hypothesis): arbitrary event names, JSON values, nesting and broken frames thrown at
every event of a joined socket of a real server with its SFU.

For every frame: an ack that is `{ok: true, ...}` or a protocol error; a refused frame leaves
the room's REST view exactly as it was; nothing reaches another room; the server stays alive
and the socket stays usable."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from roomwire.media.sfu import SFU
from roomwire.signaling import RateLimit
from roomwire.signaling.protocol import ERROR_STATUS, MAX_JSON_DEPTH, RESERVED_EVENTS

from tests.conftest import RunningServer, Servers
from tests.raw_socket import RawSocket
from tests.signaling.test_hardening import nested
from tests.sio_client import SioClient, joined_client

EVENTS = ["join", "leave", "update", "signal", "message", "sfu.publish", "sfu.subscribe", "sfu.candidate",
          "sfu.unpublish", "sfu.nothing", *sorted(RESERVED_EVENTS)]  # fmt: skip

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)  # fmt: skip
payloads = (
    json_values
    | st.integers(min_value=1, max_value=120).map(nested)
    | st.fixed_dictionaries({}, optional={
        "name": st.text(max_size=140) | st.just("bad\ud800name") | json_values,
        "metadata": json_values | st.integers(min_value=1, max_value=60).map(nested),
        "to": st.sampled_from(["observer", "fuzzer", "nobody", ""]) | json_values,
        "type": st.sampled_from(["offer", "answer", "candidate", "bye"]) | json_values,
        "data": json_values | st.integers(min_value=1, max_value=60).map(nested),
        "sdp": st.text(max_size=200) | json_values,
        "pc": st.sampled_from(["publisher", "subscriber"]) | json_values,
        "candidate": json_values,
        "sid": st.text(max_size=10) | json_values,
    })
)  # fmt: skip
names = st.sampled_from(EVENTS) | st.text(max_size=20) | scalars | st.lists(scalars, max_size=2)
frames = (
    st.tuples(names, st.lists(payloads, max_size=3)).map(lambda item: json.dumps([item[0], *item[1]]))
    # anything at all after the ack id (but a digit, which would lengthen the id)
    | st.text(max_size=60).filter(lambda text: not text[:1].isdigit())
    | st.integers(min_value=1, max_value=3000).map(lambda depth: '["update",' + "[" * depth + "]" * depth + "]")
)


class World:
    def __init__(self, running: RunningServer, fuzzer: RawSocket, observer: SioClient, outsider: SioClient) -> None:
        self.running = running
        self.fuzzer = fuzzer
        self.observer = observer
        self.outsider = outsider
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {running.admin_token()}"})

    async def room_view(self, room: str) -> Any:
        async with self.http.get(f"{self.running.url}/api/rooms/{room}") as response:
            assert response.status in (200, 404), response.status
            return await response.json()


async def start_world(servers: Servers) -> World:
    running = await servers.start(
        media=SFU(ice_servers=[], offer_timeout=1), rate_limit=RateLimit(rate=10_000, burst=10_000)
    )
    fuzzer = await RawSocket.open(running.url, running.token("fz", "fuzzer"))
    await fuzzer.connected()
    assert (await fuzzer.call("join", {}))["ok"]
    observer, _ = await joined_client(running.url, running.token("fz", "observer"))
    outsider, _ = await joined_client(running.url, running.token("elsewhere", "outsider"))
    return World(running, fuzzer, observer, outsider)


async def throw(world: World, batch: list[str]) -> None:
    for frame in batch:
        before = await world.room_view("fz")
        ack = await world.fuzzer.call_raw(frame, timeout=10)
        assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), (frame, ack)
        if not ack["ok"]:
            error = ack["error"]
            assert error["code"] in ERROR_STATUS and isinstance(error["message"], str), (frame, ack)
            assert await world.room_view("fz") == before, (frame, ack)
    # whatever was thrown, the socket still works and nothing reached the other room
    assert (await world.fuzzer.call("nothing-at-all", {}))["error"]["code"] == "bad_request"
    assert not any(world.outsider.events[name] for name in ("message", "signal", "kicked", "sfu.offer"))
    assert {e["participant"]["identity"] for e in world.outsider.events["presence"]} == {"outsider"}


@pytest.mark.timeout(300)
def test_every_frame_gets_an_ack_and_refused_frames_change_nothing():
    with asyncio.Runner() as runner:
        servers = Servers()
        world = runner.run(start_world(servers))
        try:

            @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
            @given(batch=st.lists(frames, min_size=1, max_size=6))
            def check(batch: list[str]) -> None:
                runner.run(throw(world, batch))

            check()

            async def alive() -> None:
                async with world.http.get(f"{world.running.url}/healthz") as response:
                    assert response.status == 200

            runner.run(alive())
        finally:
            runner.run(world.http.close())
            runner.run(world.fuzzer.close())
            runner.run(world.observer.close())
            runner.run(world.outsider.close())
            runner.run(servers.close())


@given(json_values | st.integers(min_value=1, max_value=MAX_JSON_DEPTH).map(nested))
def test_what_the_wire_decoder_accepts_encodes_again_within_the_depth_limit(value: Any) -> None:
    # why the event guard (socket_api.require_object) checks the depth and encodes nothing:
    # orjson decodes every event frame, and what it accepts it can write again
    try:
        decoded = orjson.loads(json.dumps(value))
    except orjson.JSONDecodeError:  # a lone surrogate: refused when the frame is read
        assume(False)
    assert orjson.loads(orjson.dumps(decoded)) == decoded
