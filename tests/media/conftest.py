"""Fixtures for the SFU tests: a real roomwire server with the SFU as its media backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from roomwire.media.sfu import SFU

from tests.conftest import MakeServer, RunningServer
from tests.media.sfu_peer import SfuPeer


@pytest.fixture
async def sfu_server(make_server: MakeServer) -> RunningServer:
    return await make_server(media=SFU(ice_servers=[], offer_timeout=3))


@pytest.fixture
async def peers(sfu_server: RunningServer) -> AsyncIterator[Callable[..., Awaitable[SfuPeer]]]:
    """`await peers(identity, room=..., grants=..., answer=True)`: a joined SfuPeer; all closed at teardown."""
    made: list[SfuPeer] = []

    async def make(identity: str, room: str = "media", grants: dict | None = None, answer: bool = True) -> SfuPeer:
        peer = SfuPeer(identity, answer=answer)
        made.append(peer)
        await peer.join(sfu_server.url, sfu_server.token(room, identity, grants=grants))
        return peer

    yield make
    for peer in made:
        await peer.close()
