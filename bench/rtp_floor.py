"""The floor of bench/sfu.py: what forwarding one RTP packet costs in Python on this machine
at the least: build the packet (header + extension block + payload), SRTP-protect it with
pylibsrtp, send it on a UDP socket. No parsing, no bookkeeping, no event loop.

Two ways, both in the same run as the servers:
- `floor_us_per_packet()`: a tight loop on a quiet machine (before and after the servers'
  runs), its receiving socket drained between timed batches;
- `python bench/rtp_floor.py --paced PPS --seconds S` (in its own process, alongside a
  server's measured window): bursts of BURST packets at PPS packets per second to a receiver
  process that waits in epoll like a client does, so the kernel's wake-ups are paid as a
  server pays them; prints the sending process's CPU µs per packet as JSON. This is the floor
  under the same load as the server it runs beside.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import select
import socket
import struct
import sys
import time

import pylibsrtp

HEADER = struct.Struct("!BBHII")
EXTENSIONS = b"\xbe\xde\x00\x02\x10\x30\x32\x00\x00\x00\x00\x00"  # mid "0" + abs-send-time, padded
PAYLOAD_SIZE = 1100
BATCH = 64
BURST = 16  # packets per wake-up of the paced floor: one ingress packet fanned out to 16
PROFILES = (
    ("aead_aes_256_gcm", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),  # aiortc <-> aiortc
    ("aes128_cm_sha1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),  # what browsers pick
)


def _packet(seq: int, payload: bytes) -> bytes:
    return b"".join((HEADER.pack(0x90, 96, seq & 0xFFFF, seq * 3000 & 0xFFFFFFFF, 7), EXTENSIONS, payload))


def _session(profile: int, key_size: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=os.urandom(key_size), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
    )
    return pylibsrtp.Session(policy)


def floor_us_per_packet(packets: int = 20_000) -> dict[str, float]:
    """µs per packet of the tight floor loop, with each SRTP profile."""
    return {f"us_per_packet_{name}": round(_tight(packets, profile, size), 2) for name, profile, size in PROFILES}


def _tight(packets: int, profile: int, key_size: int) -> float:
    session = _session(profile, key_size)
    payload = os.urandom(PAYLOAD_SIZE)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        address = receiver.getsockname()
        spent = 0.0
        for start in range(0, packets, BATCH):
            began = time.perf_counter()
            for seq in range(start, min(packets, start + BATCH)):
                sender.sendto(session.protect(_packet(seq, payload)), address)
            spent += time.perf_counter() - began
            while True:
                try:
                    receiver.recv(2048)
                except BlockingIOError:
                    break
    return spent / packets * 1e6


def _drain(ready: multiprocessing.Queue) -> None:
    """A client's receiving side: wait in epoll, read everything, until told to stop."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        ready.put(sock.getsockname())
        poll = select.epoll()
        poll.register(sock.fileno(), select.EPOLLIN)
        while True:
            poll.poll()
            try:
                while True:
                    if sock.recv(2048) == b"stop":
                        return
            except BlockingIOError:
                pass


def paced_floor(pps: float, seconds: float) -> dict[str, float]:
    """CPU µs per packet of the floor loop paced at `pps` (AES-256-GCM, as aiortc negotiates)."""
    ready: multiprocessing.Queue = multiprocessing.Queue()
    drain = multiprocessing.Process(target=_drain, args=(ready,), daemon=True)
    drain.start()
    address = ready.get(timeout=10)
    _, profile, key_size = PROFILES[0]
    session = _session(profile, key_size)
    payload = os.urandom(PAYLOAD_SIZE)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        cpu, started = time.process_time(), time.monotonic()
        while (now := time.monotonic()) - started < seconds:
            for _ in range(BURST):
                sender.sendto(session.protect(_packet(sent, payload)), address)
                sent += 1
            time.sleep(max(0.0, started + sent / pps - time.monotonic()))
        cpu = time.process_time() - cpu
        sender.sendto(b"stop", address)
    drain.join(timeout=5)
    return {"pps": round(sent / (now - started)), "us_per_packet": round(cpu / sent * 1e6, 2)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paced", type=float, metavar="PPS", help="run the paced floor at PPS packets/s")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    figures = paced_floor(args.paced, args.seconds) if args.paced else floor_us_per_packet()
    json.dump(figures, sys.stdout)
    print()
