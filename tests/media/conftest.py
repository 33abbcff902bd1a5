"""Fixtures for the SFU tests: a real roomwire server with the SFU as its media backend."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from roomwire.media.sfu import SFU

from tests.conftest import MakeServer, RunningServer
from tests.media.sfu_peer import SfuPeer
from tests.media.udp_relay import UdpRelay


@pytest.fixture
async def sfu_server(make_server: MakeServer) -> RunningServer:
    return await make_server(media=SFU(ice_servers=[], offer_timeout=3))


@pytest.fixture
async def peers(sfu_server: RunningServer) -> AsyncIterator[Callable[..., Awaitable[SfuPeer]]]:
    """`await peers(identity, room=..., grants=..., answer=True, publisher_relay=..., subscriber_relay=...)`:
    a joined SfuPeer; all closed at teardown."""
    made: list[SfuPeer] = []

    async def make(
        identity: str, room: str = "media", grants: dict | None = None, answer: bool = True, **relays: Any
    ) -> SfuPeer:
        peer = SfuPeer(identity, answer=answer, **relays)
        made.append(peer)
        await peer.join(sfu_server.url, sfu_server.token(room, identity, grants=grants))
        return peer

    yield make
    for peer in made:
        await peer.close()


@pytest.fixture
async def relays() -> AsyncIterator[Callable[[], Awaitable[UdpRelay]]]:
    """`await relays()`: a started UdpRelay on this machine's address; all closed at teardown."""
    made: list[UdpRelay] = []

    async def make() -> UdpRelay:
        relay = UdpRelay()
        made.append(relay)
        await relay.start(host_address())
        return relay

    yield make
    for relay in made:
        relay.close()


def host_address() -> str:
    """The address of the interface aiortc gathers candidates on (aioice skips loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]
