"""RTCConfiguration for the SFU's peer connections, built from the JSON-style ICE server list
that the server also hands to clients (`[{urls, username?, credential?}]`)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection
from roomwire.signaling.protocol import bad_request

MAX_PENDING_CANDIDATES = 64


def ice_server(entry: dict[str, Any]) -> RTCIceServer:
    urls = entry.get("urls")
    if not (isinstance(urls, str) or (isinstance(urls, list) and all(isinstance(u, str) for u in urls))):
        raise ValueError("an ICE server needs `urls`: a string or a list of strings")
    return RTCIceServer(urls=urls, username=entry.get("username"), credential=entry.get("credential"))


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """Always explicit: aiortc's default (a public STUN server) is unreachable in closed networks."""
    return RTCConfiguration(iceServers=[ice_server(entry) for entry in ice_servers])


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    """Before renegotiating a connection that is still connecting, let it finish.

    aiortc 1.16 starts the senders and receivers of new transceivers only if DTLS is already
    connected when the new description is applied; a renegotiation that lands mid-handshake
    leaves them silent for good. Raises ConnectionError if the connection fails instead.
    """
    if pc.remoteDescription is None or pc.connectionState == "connected":
        return
    changed = asyncio.Event()
    pc.on("connectionstatechange", changed.set)
    try:
        async with asyncio.timeout(timeout):
            while pc.connectionState in ("new", "connecting"):
                changed.clear()
                await changed.wait()
    except TimeoutError:
        raise ConnectionError(f"the connection did not come up within {timeout} s") from None
    finally:
        pc.remove_listener("connectionstatechange", changed.set)
    if pc.connectionState != "connected":
        raise ConnectionError(f"the connection is {pc.connectionState}")


class PendingCandidates:
    """Trickled candidates that arrive before the description they belong to (bounded)."""

    def __init__(self) -> None:
        self._held: list[RTCIceCandidate | None] = []

    def hold(self, candidate: RTCIceCandidate | None) -> None:
        if len(self._held) >= MAX_PENDING_CANDIDATES:
            raise bad_request("too many ICE candidates before the description they belong to")
        self._held.append(candidate)

    async def apply(self, pc: RTCPeerConnection) -> None:
        """After setRemoteDescription: add what was held, in arrival order."""
        held, self._held = self._held, []
        for candidate in held:
            await pc.addIceCandidate(candidate)


async def close_pc(pc: RTCPeerConnection) -> None:
    """Close a peer connection even if the caller is cancelled meanwhile.

    aiortc's close() lets later callers await its internal "closed" future; cancelling one of
    them cancels that future, and the first close() then dies setting its result.
    """
    await asyncio.shield(pc.close())
