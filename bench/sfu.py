"""SFU benchmark: roomwire's packet forwarder against aiortc's stock MediaRelay, and the floor
of what Python can do per packet, in the same run.

    .venv/bin/python bench/sfu.py [--subscribers 1,4,16,32,64] [--relay-subscribers 1,4,16]
                                  [--two-node-subscribers 4,16] [--seconds 6] [--quick]

One publisher sends a pre-encoded 640x480 30 fps VP8 stream (about 500 kbit/s, encoded once
up-front and replayed as packets, so generating it costs nearly nothing) and a 48 kHz Opus
tone to N subscribers that count RTP packets without decoding anything (their receivers are
tapped before aiortc's jitter buffer). One more subscriber, the probe, decodes the video and
reads the frame counter drawn into each picture, to measure latency. Each server runs as its
own process, so its CPU time is its own:
  roomwire     `roomwire serve --media sfu`, driven over Socket.IO `sfu.*` like any client
  two-nodes    two `roomwire serve --redis-url` nodes on one redis-server: the publisher and the
               probe on the first, the counting subscribers on the second (the room's media
               lives on one of them); CPU is both nodes' and Redis's
  mediarelay   this file's `--relay-server`: aiortc's MediaRelay, one decode and one encode
               per subscriber and track (how aiortc's examples relay a track)
The counting subscribers run in load-generator processes of 8 (bench/sfu_load.py), so one
saturated client loop does not pass for a slow server.
The floor (bench/rtp_floor.py) is the loop "build an RTP packet, SRTP-protect it, sendto" with
nothing else: as a tight loop at the start and at the end of the run, and paced (1000 packets/s
in bursts of 16, to a receiver waiting in epoll) in its own process beside every measured
window, so that it pays what the server pays under the same load.
`--before PYTHON` also measures the roomwire of another checkout (e.g. main's venv), side by side.
Figures per (server, N): server CPU µs per forwarded packet (packets the subscribers and the
probe received), server CPU as % of a core per subscriber (the probe counts as one), frames
per second each counting subscriber received, and the probe's latency (p50, p95) minus that of
a direct publisher-to-probe connection (added latency). JSON on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiortc import RTCPeerConnection

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # the repository's packages, not bench/ (which has a signaling.py)

from roomwire.media.sources import ToneAudioTrack  # noqa: E402

from bench.rtp_floor import floor_us_per_packet  # noqa: E402
from bench.serving import free_port, start_redis, wait_serving  # noqa: E402
from bench.sfu_load import (  # noqa: E402
    FPS,
    Counter,
    Probe,
    RelaySession,
    ReplayTrack,
    RoomwireSession,
    config,
    encode_stream,
    relay_server,
)

POOL_SIZE = 8  # counting subscribers per load-generator process
PACED_FLOOR_PPS = 1000  # the floor that runs beside each measured window
FORWARDED = re.compile(r'^roomwire_media_forwarded_packets_total\{kind="(audio|video)"\} (\S+)$', re.M)


# -- one measured run ---------------------------------------------------------------------------


# the roomwire of another checkout (`--before PYTHON`: that checkout's venv interpreter)
BEFORE: dict[str, str] = {}


@dataclass
class Servers:
    """The processes measured: one server, or (`two-nodes`) two roomwire nodes and their Redis.
    The publisher and the probe use `urls[0]`, the counting subscribers `urls[-1]`."""

    procs: list[asyncio.subprocess.Process]
    urls: list[str]
    secret: str

    async def stop(self) -> None:
        for proc in reversed(self.procs):  # the nodes before their Redis
            if proc.returncode is None:
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()


async def start_server(kind: str, secret: str, redis_url: str = "") -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {**os.environ, "ROOMWIRE_SECRET": secret, "PYTHONPATH": str(REPO)}
    serve = ["-m", "roomwire.signaling.cli", "serve", "--media", "sfu", "--port", str(port), "--log-level", "warning"]
    if kind == "roomwire":
        command = [sys.executable, *serve, *(["--redis-url", redis_url] if redis_url else [])]
    elif kind == "before":
        command = [BEFORE["python"], *serve]
        del env["PYTHONPATH"]  # that checkout's own packages
    else:
        command = [sys.executable, str(REPO / "bench" / "sfu.py"), "--relay-server", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(*command, cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_serving(url + ("/" if kind == "mediarelay" else "/healthz"), lambda: proc.returncode, timeout=20)
    except RuntimeError:
        proc.kill()
        raise
    return proc, url


async def start_servers(kind: str) -> Servers:
    secret = secrets.token_hex(24)  # never starts with "-" (it goes on a command line)
    if kind != "two-nodes":
        proc, url = await start_server(kind, secret)
        return Servers([proc], [url], secret)
    redis, redis_url = await start_redis()
    nodes = [await start_server("roomwire", secret, redis_url) for _ in range(2)]
    return Servers([redis, *(proc for proc, _ in nodes)], [url for _, url in nodes], secret)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    total = times.user + times.system
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


async def forwarded_by_server(urls: list[str]) -> int:
    """roomwire's own count of RTP packets sent to subscribers (its nodes' /metrics)."""
    total = 0.0
    async with aiohttp.ClientSession() as http:
        for url in urls:
            async with http.get(url + "/metrics") as response:
                total += sum(float(value) for _, value in FORWARDED.findall(await response.text()))
    return int(total)


def client_session(kind: str, url: str, secret: str) -> RoomwireSession | RelaySession:
    return RelaySession(url) if kind == "mediarelay" else RoomwireSession(url, secret)


COUNTED_BY_SERVER = ("roomwire", "two-nodes")


async def subscriber_pool(kind: str, url: str, secret: str, names: list[str]) -> None:
    """A process of counting subscribers (so the load generator is not one saturated loop).

    Prints `ready`; on `start` from stdin it notes the counts, on `stop` it prints the
    [packets, frames] each subscriber received in between, as JSON, and exits.
    """
    session = client_session(kind, url, secret)
    counters = [Counter() for _ in names]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        for start in range(0, len(names), 4):
            await asyncio.gather(
                *(session.subscribe(names[i], counters[i]) for i in range(start, min(len(names), start + 4)))
            )
        print("ready", flush=True)
        await reader.readline()
        before = [(c.packets, c.frames) for c in counters]
        await reader.readline()
        counts = [(c.packets - p, c.frames - f) for c, (p, f) in zip(counters, before, strict=True)]
        print(json.dumps(counts), flush=True)
    finally:
        await session.close()


async def start_pools(kind: str, url: str, secret: str, subscribers: int) -> list[asyncio.subprocess.Process]:
    pools = []
    for start in range(0, subscribers, POOL_SIZE):
        names = ",".join(f"s{i}" for i in range(start, min(subscribers, start + POOL_SIZE)))
        command = [sys.executable, str(REPO / "bench" / "sfu.py"), "--subscriber-pool", kind, url, secret, names]
        pools.append(
            await asyncio.create_subprocess_exec(
                *command, cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        )
    for pool in pools:
        assert pool.stdout is not None
        line = await asyncio.wait_for(pool.stdout.readline(), 120)
        if line.strip() != b"ready":
            raise RuntimeError("a subscriber pool failed to start")
    return pools


async def tell(pools: list[asyncio.subprocess.Process], word: str) -> None:
    for pool in pools:
        assert pool.stdin is not None
        pool.stdin.write(word.encode() + b"\n")
        await pool.stdin.drain()


async def run(kind: str, subscribers: int, frames: list[bytes], seconds: float, direct_p50: float) -> dict[str, Any]:
    servers = await start_servers(kind)
    secret = servers.secret
    sent_at: dict[int, float] = {}
    session = client_session(kind, servers.urls[0], secret)
    probe = Probe(sent_at)
    pools: list[asyncio.subprocess.Process] = []
    server_count: int | None = None
    try:
        await session.publish([ReplayTrack(frames, sent_at), ToneAudioTrack()])
        await asyncio.sleep(0.5)
        await session.subscribe("probe", probe)
        pool_kind = "roomwire" if kind == "two-nodes" else kind
        pools = await start_pools(pool_kind, servers.urls[-1], secret, subscribers)
        await asyncio.sleep(3)  # every subscriber past its first keyframe
        server, driver = [psutil.Process(proc.pid) for proc in servers.procs], psutil.Process()
        clients = [driver] + [psutil.Process(pool.pid) for pool in pools]
        server_before = await forwarded_by_server(servers.urls) if kind in COUNTED_BY_SERVER else 0
        probe_before = await probe.packets()
        floor = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "bench" / "rtp_floor.py"),
            "--paced",
            str(PACED_FLOOR_PPS),
            "--seconds",
            str(seconds),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        cpu_before, clients_before, t0 = sum(map(cpu_seconds, server)), sum(map(cpu_seconds, clients)), time.monotonic()
        await tell(pools, "start")
        probe.recording = True
        await asyncio.sleep(seconds)
        probe.recording = False
        await tell(pools, "stop")
        elapsed = time.monotonic() - t0
        cpu = sum(map(cpu_seconds, server)) - cpu_before
        driver_cpu = sum(map(cpu_seconds, clients)) - clients_before
        probe_packets = await probe.packets() - probe_before
        if kind in COUNTED_BY_SERVER:
            server_count = await forwarded_by_server(servers.urls) - server_before
        floor_beside = json.loads((await floor.communicate())[0])
        counts: list[tuple[int, int]] = []
        for pool in pools:
            assert pool.stdout is not None
            counts += [tuple(c) for c in json.loads(await asyncio.wait_for(pool.stdout.readline(), 30))]
    finally:
        await probe.close()
        for pool in pools:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.wait(), 10)
            if pool.returncode is None:
                pool.kill()
        await session.close()
        await servers.stop()
    packets = sum(p for p, _ in counts) + probe_packets
    fps = [f / elapsed for _, f in counts]
    latencies = sorted(probe.latencies)
    p50 = statistics.median(latencies) if latencies else None
    p95 = latencies[int(len(latencies) * 0.95)] if latencies else None
    return {
        "server": kind,
        "subscribers": subscribers,
        "cpu_us_per_forwarded_packet": round(1e6 * cpu / packets, 1) if packets else None,
        "floor_beside_us_per_packet": floor_beside["us_per_packet"],
        "core_percent_per_subscriber": round(100 * cpu / elapsed / (subscribers + 1), 3),
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "clients_cpu_percent": round(100 * driver_cpu / elapsed, 1),
        "forwarded_packets_per_s": round(packets / elapsed),
        "server_counted_packets_per_s": round(server_count / elapsed) if server_count is not None else None,
        "fps_mean": round(statistics.fmean(fps), 2),
        "fps_min": round(min(fps), 2),
        "probe_fps": round(probe.frames / elapsed, 2),
        "latency_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "latency_p95_ms": round(p95 * 1000, 1) if p95 is not None else None,
        "added_latency_p50_ms": round((p50 - direct_p50) * 1000, 1) if p50 is not None else None,
    }


async def direct_latency(frames: list[bytes], seconds: float) -> float:
    """Publisher to probe with no server between them: the latency the SFU adds to."""
    sent_at: dict[int, float] = {}
    probe = Probe(sent_at)
    sender, receiver = RTCPeerConnection(config()), RTCPeerConnection(config())
    probe.attach(receiver)
    try:
        sender.addTransceiver(ReplayTrack(frames, sent_at), direction="sendonly")
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.sleep(2)
        probe.recording = True
        await asyncio.sleep(seconds)
    finally:
        await probe.close()
        await sender.close()
        await receiver.close()
    return statistics.median(probe.latencies)


def describe(result: dict[str, Any]) -> str:
    return (
        f"{result['server']:>10} N={result['subscribers']:>2}: "
        f"{result['cpu_us_per_forwarded_packet']} us CPU per forwarded packet "
        f"(floor beside it {result['floor_beside_us_per_packet']} us), "
        f"{result['core_percent_per_subscriber']:.3f} % of a core per subscriber "
        f"(server {result['server_cpu_percent']} %, clients {result['clients_cpu_percent']} %, "
        f"{result['forwarded_packets_per_s']} packets/s), {result['fps_mean']} fps/subscriber "
        f"(min {result['fps_min']}), latency p50 {result['latency_p50_ms']} ms "
        f"p95 {result['latency_p95_ms']} ms (+{result['added_latency_p50_ms']} ms over direct)"
    )


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    floor_before = floor_us_per_packet()
    print(f"floor (build + SRTP-protect + sendto, 1100 B payload, tight loop): {floor_before}")
    frames = encode_stream()
    kbps = sum(len(f) for f in frames) * 8 / (len(frames) / FPS) / 1000
    print(f"stream: {len(frames)} VP8 frames 640x480 @ {FPS} fps, {kbps:.0f} kbit/s (encoded once), + Opus tone")
    direct = await direct_latency(frames, 3)
    print(f"direct publisher->probe latency p50: {direct * 1000:.1f} ms")
    plan = [("roomwire", int(n)) for n in args.subscribers.split(",") if n]
    plan += [("mediarelay", int(n)) for n in args.relay_subscribers.split(",") if n]
    plan += [("two-nodes", int(n)) for n in args.two_node_subscribers.split(",") if n]
    if args.before:
        BEFORE["python"] = args.before
        plan += [("before", int(n)) for n in args.before_subscribers.split(",") if n]
    order = {"roomwire": 0, "two-nodes": 1, "before": 2, "mediarelay": 3}
    plan.sort(key=lambda run: (run[1], order[run[0]]))  # side by side, N by N
    results = []
    for kind, n in plan:
        result = await run(kind, n, frames, args.seconds, direct)
        results.append(result)
        print(describe(result))
    floor_after = floor_us_per_packet()
    print(f"floor again at the end: {floor_after}")
    ratios: dict[str, dict[str, float]] = {}
    ours = {r["subscribers"]: r["cpu_us_per_forwarded_packet"] for r in results if r["server"] == "roomwire"}
    for other in (r for r in results if r["server"] != "roomwire"):
        n, theirs = other["subscribers"], other["cpu_us_per_forwarded_packet"]
        if ours.get(n) and theirs:
            ratio = ratios.setdefault(other["server"], {})[str(n)] = round(theirs / ours[n], 1)
            print(f"N={n}: {other['server']} costs {ratio}x roomwire's CPU per forwarded packet")
    print(
        json.dumps(
            {
                "benchmark": "sfu",
                "stream_kbps": round(kbps),
                "cores": psutil.cpu_count(),
                "seconds_per_run": args.seconds,
                "floor": {"start": floor_before, "end": floor_after},
                "direct_latency_p50_ms": round(direct * 1000, 1),
                "results": results,
                "cpu_per_packet_ratio_over_roomwire": ratios,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "wall_seconds": round(time.monotonic() - started, 1),
            }
        )
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="1,4,16,32,64", help="roomwire: comma-separated N values")
    parser.add_argument("--relay-subscribers", default="1,4,16", help="MediaRelay: N values ('' for none)")
    parser.add_argument(
        "--before", metavar="PYTHON", help="also measure the roomwire of another checkout (its venv's python)"
    )
    parser.add_argument("--before-subscribers", default="1,4,16", help="N values for --before")
    parser.add_argument(
        "--two-node-subscribers", default="4,16",
        help="two nodes on one Redis, publisher on one, subscribers on the other: N values ('' for none)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument("--quick", action="store_true", help="N = 1,4 for 3 s each")
    parser.add_argument("--relay-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--subscriber-pool", nargs=4, metavar=("KIND", "URL", "SECRET", "NAMES"), help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.subscribers = args.relay_subscribers = args.before_subscribers = args.two_node_subscribers = "1,4"
        args.seconds = 3.0
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.relay_server:
        relay_server(arguments.port)
    elif arguments.subscriber_pool:
        kind, url, secret, names = arguments.subscriber_pool
        asyncio.run(subscriber_pool(kind, url, secret, names.split(",")))
    else:
        asyncio.run(main(arguments))
