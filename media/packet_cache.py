"""The last packets of one published video track, by sequence number: what NACKs are answered from."""

from __future__ import annotations

from .rtp_packets import InboundPacket

CACHE_PACKETS = 512  # ~3 s at 1.4 Mbit/s: far longer than any retransmission is useful


class PacketCache:
    """A ring indexed by sequence number: a newer packet overwrites the one 512 before it."""

    __slots__ = ("_mask", "_slots")

    def __init__(self, size: int = CACHE_PACKETS) -> None:
        if size & (size - 1):
            raise ValueError("the cache size must be a power of 2")
        self._slots: list[InboundPacket | None] = [None] * size
        self._mask = size - 1

    def put(self, packet: InboundPacket) -> None:
        self._slots[packet.seq & self._mask] = packet

    def get(self, seq: int) -> InboundPacket | None:
        packet = self._slots[seq & self._mask]
        return packet if packet is not None and packet.seq == seq else None
