"""The floor of bench/sfu.py: what forwarding one RTP packet costs in Python on this machine
at the least: build the packet (header + extension block + payload), SRTP-protect it with
pylibsrtp, send it on a UDP socket. No parsing, no bookkeeping, no event loop.

The receiving socket is drained between timed batches, so its cost is not counted.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pylibsrtp

HEADER = struct.Struct("!BBHII")
EXTENSIONS = b"\xbe\xde\x00\x02\x10\x30\x32\x00\x00\x00\x00\x00"  # mid "0" + abs-send-time, padded
BATCH = 64


def floor_us_per_packet(packets: int = 20_000, payload_size: int = 1100) -> dict[str, float | str]:
    """µs per packet of the floor loop, with the SRTP profile aiortc negotiates between its
    own peers (AEAD AES-256-GCM) and with the one most browsers pick (AES-128-CM/HMAC-SHA1-80)."""
    figures: dict[str, float | str] = {"payload_bytes": payload_size}
    for name, profile, key_size in (
        ("aead_aes_256_gcm", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
        ("aes128_cm_sha1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    ):
        figures[f"us_per_packet_{name}"] = round(_run(packets, payload_size, profile, key_size), 2)
    return figures


def _run(packets: int, payload_size: int, profile: int, key_size: int) -> float:
    policy = pylibsrtp.Policy(
        key=os.urandom(key_size), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
    )
    session = pylibsrtp.Session(policy)
    payload = os.urandom(payload_size)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        address = receiver.getsockname()
        ssrc, timestamp = 0x1234ABCD, 0
        spent = 0.0
        for start in range(0, packets, BATCH):
            began = time.perf_counter()
            for seq in range(start, min(packets, start + BATCH)):
                timestamp += 3000
                data = b"".join(
                    (HEADER.pack(0x90, 96, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc), EXTENSIONS, payload)
                )
                sender.sendto(session.protect(data), address)
            spent += time.perf_counter() - began
            while True:
                try:
                    receiver.recv(2048)
                except BlockingIOError:
                    break
    finally:
        receiver.close()
        sender.close()
    return spent / packets * 1e6
