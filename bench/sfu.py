"""SFU benchmark: roomwire's forwarder against aiortc's stock MediaRelay, in the same run.

    .venv/bin/python bench/sfu.py [--subscribers 1,4,16,32] [--seconds 6] [--quick]

One publisher sends a pre-encoded 640x480 30 fps VP8 stream (about 500 kbit/s, encoded once
up-front and replayed as packets, so generating it costs nearly nothing) to N subscribers that
count frames without decoding them (their receivers are tapped like the SFU's own). One more
subscriber, the probe, decodes and reads the frame counter drawn into each picture, to
measure latency. Each server runs as its own process, so its CPU time is its own:
  roomwire     `roomwire serve --media sfu`, driven over Socket.IO `sfu.*` like any client
  mediarelay   this file's `--relay-server`: aiortc's MediaRelay, one decode and one encode
               per subscriber (how aiortc's examples relay a track)
The counting subscribers run in load-generator processes of 8 (bench/sfu_load.py), so one
saturated client loop does not pass for a slow server.
Figures per (server, N): server CPU seconds per subscriber-second (the probe counts as a
subscriber) and per delivered frame (fair against a saturated server that delivers fewer),
frames per second each counting subscriber received (mean and min), and the probe's latency
(p50, p95) minus that of a direct publisher-to-probe connection (added latency). The JSON
object on the last line also holds the MediaRelay/roomwire CPU ratios per N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from aiortc import RTCPeerConnection

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # the repository's packages, not bench/ (which has a signaling.py)

from bench.serving import free_port, wait_serving  # noqa: E402
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


# -- one measured run ---------------------------------------------------------------------------


async def start_server(kind: str) -> tuple[asyncio.subprocess.Process, str, str]:
    port = free_port()
    secret = secrets.token_urlsafe(24)
    if kind == "roomwire":
        command = [sys.executable, "-m", "roomwire.signaling.cli", "serve", "--media", "sfu", "--port", str(port)]
        command += ["--log-level", "warning"]
    else:
        command = [sys.executable, str(REPO / "bench" / "sfu.py"), "--relay-server", "--port", str(port)]
    env = {**os.environ, "ROOMWIRE_SECRET": secret, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(*command, cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_serving(url + ("/healthz" if kind == "roomwire" else "/"), lambda: proc.returncode, timeout=20)
    except RuntimeError:
        proc.kill()
        raise
    return proc, url, secret


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    total = times.user + times.system
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


async def subscriber_pool(kind: str, url: str, secret: str, names: list[str]) -> None:
    """A process of counting subscribers (so the load generator is not one saturated loop).

    Prints `ready`; on `start` from stdin it notes the frame counts, on `stop` it prints the
    frames each subscriber received in between, as JSON, and exits.
    """
    session: RoomwireSession | RelaySession = RoomwireSession(url, secret) if kind == "roomwire" else RelaySession(url)
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
        before = [c.frames for c in counters]
        await reader.readline()
        print(json.dumps([c.frames - b for c, b in zip(counters, before, strict=True)]), flush=True)
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
        line = await asyncio.wait_for(pool.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError("a subscriber pool failed to start")
    return pools


async def tell(pools: list[asyncio.subprocess.Process], word: str) -> None:
    for pool in pools:
        assert pool.stdin is not None
        pool.stdin.write(word.encode() + b"\n")
        await pool.stdin.drain()


async def run(kind: str, subscribers: int, frames: list[bytes], seconds: float, direct_p50: float) -> dict[str, Any]:
    proc, url, secret = await start_server(kind)
    sent_at: dict[int, float] = {}
    session: RoomwireSession | RelaySession = RoomwireSession(url, secret) if kind == "roomwire" else RelaySession(url)
    probe = Probe(sent_at)
    pools: list[asyncio.subprocess.Process] = []
    try:
        await session.publish(ReplayTrack(frames, sent_at))
        await asyncio.sleep(0.5)
        await session.subscribe("probe", probe)
        pools = await start_pools(kind, url, secret, subscribers)
        await asyncio.sleep(3)  # every subscriber past its first keyframe
        server, driver = psutil.Process(proc.pid), psutil.Process()
        clients = [driver] + [psutil.Process(pool.pid) for pool in pools]
        cpu_before, clients_before, t0 = cpu_seconds(server), sum(map(cpu_seconds, clients)), time.monotonic()
        await tell(pools, "start")
        probe.recording = True
        await asyncio.sleep(seconds)
        probe.recording = False
        await tell(pools, "stop")
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(server) - cpu_before
        driver_cpu = sum(map(cpu_seconds, clients)) - clients_before
        counts: list[int] = []
        for pool in pools:
            assert pool.stdout is not None
            counts += json.loads(await asyncio.wait_for(pool.stdout.readline(), 30))
        fps = [count / elapsed for count in counts]
    finally:
        await probe.close()
        for pool in pools:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.wait(), 10)
            if pool.returncode is None:
                pool.kill()
        await session.close()
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
    delivered = sum(fps) * elapsed + probe.frames
    latencies = sorted(probe.latencies)
    p50 = statistics.median(latencies) if latencies else None
    p95 = latencies[int(len(latencies) * 0.95)] if latencies else None
    return {
        "server": kind,
        "subscribers": subscribers,
        "cpu_s_per_subscriber_s": round(cpu / ((subscribers + 1) * elapsed), 5),
        "cpu_ms_per_delivered_frame": round(1000 * cpu / delivered, 3) if delivered else None,
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "clients_cpu_percent": round(100 * driver_cpu / elapsed, 1),
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


async def main(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.subscribers.split(",")]
    started = time.monotonic()
    frames = encode_stream()
    kbps = sum(len(f) for f in frames) * 8 / (len(frames) / FPS) / 1000
    print(f"stream: {len(frames)} VP8 frames 640x480 @ {FPS} fps, {kbps:.0f} kbit/s (encoded once)")
    direct = await direct_latency(frames, 3)
    print(f"direct publisher->probe latency p50: {direct * 1000:.1f} ms")
    results = []
    for n in counts:
        for kind in args.servers.split(","):
            result = await run(kind, n, frames, args.seconds, direct)
            results.append(result)
            print(
                f"{kind:>10} N={n:>2}: {result['cpu_s_per_subscriber_s']:.4f} CPU s per subscriber-s, "
                f"{result['cpu_ms_per_delivered_frame']} CPU ms per delivered frame "
                f"(server {result['server_cpu_percent']}%, clients {result['clients_cpu_percent']}%), "
                f"{result['fps_mean']} fps/subscriber "
                f"(min {result['fps_min']}), latency p50 {result['latency_p50_ms']} ms "
                f"p95 {result['latency_p95_ms']} ms (+{result['added_latency_p50_ms']} ms over direct)"
            )
    ratios, frame_ratios = {}, {}
    for n in counts if args.servers == "roomwire,mediarelay" else []:
        ours = next(r for r in results if r["server"] == "roomwire" and r["subscribers"] == n)
        theirs = next(r for r in results if r["server"] == "mediarelay" and r["subscribers"] == n)
        if ours["cpu_s_per_subscriber_s"] > 0:
            ratios[str(n)] = round(theirs["cpu_s_per_subscriber_s"] / ours["cpu_s_per_subscriber_s"], 1)
        if ours["cpu_ms_per_delivered_frame"] and theirs["cpu_ms_per_delivered_frame"]:
            frame_ratios[str(n)] = round(theirs["cpu_ms_per_delivered_frame"] / ours["cpu_ms_per_delivered_frame"], 1)
        # a saturated MediaRelay delivers fewer frames, which flatters its per-second figure:
        # the per-delivered-frame ratio is the fair one
        print(
            f"N={n}: MediaRelay costs {ratios.get(str(n))}x roomwire's CPU per subscriber-second, "
            f"{frame_ratios.get(str(n))}x per delivered frame"
        )
    print(
        json.dumps(
            {
                "benchmark": "sfu",
                "stream_kbps": round(kbps),
                "cores": psutil.cpu_count(),
                "seconds_per_run": args.seconds,
                "direct_latency_p50_ms": round(direct * 1000, 1),
                "results": results,
                "cpu_ratio_mediarelay_over_roomwire": ratios,
                "cpu_per_frame_ratio_mediarelay_over_roomwire": frame_ratios,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "wall_seconds": round(time.monotonic() - started, 1),
            }
        )
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="1,4,16,32", help="comma-separated N values")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument(
        "--servers", default="roomwire,mediarelay", choices=["roomwire,mediarelay", "roomwire", "mediarelay"]
    )
    parser.add_argument("--quick", action="store_true", help="N = 1,4 for 3 s each")
    parser.add_argument("--relay-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--subscriber-pool", nargs=4, metavar=("KIND", "URL", "SECRET", "NAMES"), help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.seconds = "1,4", 3.0
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
