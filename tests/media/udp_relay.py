"""A UDP relay between one peer connection of a test peer and the SFU, for loss and throttling.

There is no netem here, so a test puts this relay on the path: both sides' SDP candidates are
rewritten (`to_peer`, `to_server`) so that the peer only knows the relay's peer-side socket
and the SFU only its server-side socket; every datagram (STUN, DTLS, SRTP, SRTCP) then passes
through, and the test decides what gets lost. SRTP leaves the RTP header in the clear, so a
policy can pick packets by SSRC and sequence number.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d) (\S+) (\d+) (\S+) (\d+) typ (\S+).*$", re.M)

# decides whether one datagram is dropped
Policy = Callable[[bytes], bool]


def is_rtp(data: bytes) -> bool:
    return len(data) >= 12 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223


def is_rtcp(data: bytes) -> bool:
    return len(data) >= 8 and 128 <= data[0] < 192 and 192 <= data[1] <= 223


def rtp_ssrc(data: bytes) -> int:
    return int.from_bytes(data[8:12], "big")


def rtp_seq(data: bytes) -> int:
    return int.from_bytes(data[2:4], "big")


def ssrcs(sdp: str, kind: str) -> list[int]:
    """The `a=ssrc` ids of the first media section of `kind` (media first, then RTX)."""
    section = sdp.split(f"m={kind} ", 1)[1].split("\r\nm=", 1)[0]
    found: list[int] = []
    for match in re.finditer(r"^a=ssrc:(\d+) ", section, re.M):
        if int(match.group(1)) not in found:
            found.append(int(match.group(1)))
    return found


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)


class UdpRelay:
    """`drop_to_server` / `drop_to_peer` decide losses; `throttle_to_peer(bits_per_s)` polices
    what reaches the peer with a token bucket (None lifts it)."""

    def __init__(self) -> None:
        self.drop_to_server: Policy = lambda data: False
        self.drop_to_peer: Policy = lambda data: False
        self.dropped = 0
        self._rate: float | None = None
        self._tokens = 0.0
        self._refilled = time.monotonic()
        self._peer_side: _Side | None = None
        self._server_side: _Side | None = None
        self._peer: tuple[str, int] | None = None
        self._server: tuple[str, int] | None = None
        self._host = ""

    async def start(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        self._host = host
        _, self._peer_side = await loop.create_datagram_endpoint(lambda: _Side(self._from_peer), local_addr=(host, 0))
        _, self._server_side = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_server), local_addr=(host, 0)
        )

    def throttle_to_peer(self, bits_per_second: float | None) -> None:
        self._rate = bits_per_second
        self._tokens = 0.0
        self._refilled = time.monotonic()

    # -- SDP: make each side see only the relay ---------------------------------------------------

    def to_peer(self, sdp: str) -> str:
        """The SFU's description, for the peer: the SFU is the relay's peer-side socket."""
        match = next(m for m in CANDIDATE.finditer(sdp) if m.group(3).lower() == "udp" and "." in m.group(5))
        self._server = (match.group(5), int(match.group(6)))
        return self._only_candidate(sdp, self._peer_side)

    def to_server(self, sdp: str) -> str:
        """The peer's description, for the SFU: the peer is the relay's server-side socket."""
        return self._only_candidate(sdp, self._server_side)

    def _only_candidate(self, sdp: str, side: _Side | None) -> str:
        assert side is not None and side.transport is not None
        port = side.transport.get_extra_info("sockname")[1]
        line = f"a=candidate:relay{port} 1 udp 2130706431 {self._host} {port} typ host"
        lines = [x for x in sdp.split("\r\n") if not x.startswith("a=candidate:")]
        out: list[str] = []
        for x in lines:
            out.append(x)
            if x.startswith("m="):
                out.append(line)
        return "\r\n".join(out)

    # -- datagrams ---------------------------------------------------------------------------------

    def _from_peer(self, data: bytes, addr: tuple[str, int]) -> None:
        self._peer = addr
        if self._server is None or self._server_side is None or self._server_side.transport is None:
            return
        if self.drop_to_server(data):
            self.dropped += 1
            return
        self._server_side.transport.sendto(data, self._server)

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._peer is None or self._peer_side is None or self._peer_side.transport is None:
            return
        media = 128 <= data[0] < 192  # SRTP or SRTCP: never ICE or DTLS
        if self.drop_to_peer(data) or (media and not self._allowed(len(data))):
            self.dropped += 1
            return
        self._peer_side.transport.sendto(data, self._peer)

    def _allowed(self, size: int) -> bool:
        if self._rate is None:
            return True
        now = time.monotonic()
        burst = self._rate / 8 * 0.1  # 100 ms worth
        self._tokens = min(burst, self._tokens + (now - self._refilled) * self._rate / 8)
        self._refilled = now
        if self._tokens < size:
            return False
        self._tokens -= size
        return True

    def close(self) -> None:
        for side in (self._peer_side, self._server_side):
            if side is not None and side.transport is not None:
                side.transport.close()
