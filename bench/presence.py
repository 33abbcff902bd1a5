"""Presence fan-out: SSE vs long polling vs Socket.IO watchers of one room.

Starts `roomwire serve --media none` as its own process, connects N watchers of one room per
transport (a room per transport, one transport at a time, so CPU is attributable), then makes
presence events (a participant's `update`), one at a time (`--rounds`, default 10), and measures:

- latency: from just before the update is sent until each watcher has parsed the event
  (p50/p99/max over every watcher of every round; all clocks are this process's);
- server CPU seconds per 1,000 deliveries (psutil on the server process, the idle rate
  measured just before subtracted: Engine.IO pings, SSE heartbeats, expiring polls);
- bytes on the wire per delivered event: application bytes on the TCP stream (HTTP framing,
  headers, chunk sizes, WebSocket frames; not TCP/IP headers), both directions, counted
  inside the clients. For long polling this includes the response and the next request.

SSE and long-poll watchers are raw HTTP/1.1 clients with minimal headers (a browser adds about
0.5 KB of headers to every request: every poll). Socket.IO watchers speak Engine.IO v4 over
aiohttp's WebSocket client, offering permessage-deflate as browsers do (the server accepts it,
so frames are compressed per socket).
Socket.IO watchers must `join` to receive presence, so they are participants: N joins make
N^2/2 presence frames before the measurement, so their setup grows with N^2 (1,000 take about
2.5 minutes here); by default that column has 400 watchers and the run stays under 2 minutes.

    .venv/bin/python bench/presence.py                          # 1,000 SSE + 1,000 long-poll + 400 Socket.IO
    .venv/bin/python bench/presence.py --sio-watchers 1000      # the full 1,000 everywhere (~2.5 min)
    .venv/bin/python bench/presence.py --watchers 200 --only sse,longpoll
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from roomwire.signaling.tokens import TokenIssuer  # noqa: E402

from bench.serving import free_port, wait_serving  # noqa: E402 - after the path fix, for a checkout

SECRET = "bench-presence-secret-0123456789abcdef"
TRANSPORTS = ("sse", "longpoll", "socketio")
IDLE_WINDOW = 2.0  # seconds of idle server CPU measured before the events, then subtracted


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise SystemExit(f"presence bench: needs ~{needed} file descriptors, the hard limit is {target}")
    return target


@dataclass
class Watcher:
    """What every watcher records: bytes both ways, and when the armed event arrived."""

    bytes_in: int = 0
    bytes_out: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    armed: bool = False
    arrived: float | None = None
    got: asyncio.Event = field(default_factory=asyncio.Event)
    offset: int = 0

    def saw(self, offset: int) -> None:
        self.offset = max(self.offset, offset)
        if self.armed and self.arrived is None:
            self.arrived = time.perf_counter()
            self.got.set()


class RawHTTP:
    """One keep-alive HTTP/1.1 connection that counts every byte it moves."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)

    def send(self, data: bytes) -> None:
        self.watcher.bytes_out += len(data)
        self.writer.write(data)

    async def line(self) -> bytes:
        data = await self.reader.readline()
        if not data:
            raise ConnectionError("closed")
        self.watcher.bytes_in += len(data)
        return data

    async def exactly(self, count: int) -> bytes:
        data = await self.reader.readexactly(count)
        self.watcher.bytes_in += len(data)
        return data

    async def head(self) -> tuple[int, dict[str, str]]:
        status = int((await self.line()).split()[1])
        headers = {}
        while (line := await self.line()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers


async def sse_watcher(host: str, port: int, room: str, token: str, watcher: Watcher) -> None:
    conn = RawHTTP(watcher)
    await conn.open(host, port)
    conn.send(
        f"GET /rooms/{room}/presence/sse?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    status, headers = await conn.head()
    assert status == 200 and headers.get("transfer-encoding") == "chunked", (status, headers)
    pending = b""
    while True:
        size = int((await conn.line()).strip(), 16)
        if size == 0:
            return
        pending += await conn.exactly(size)
        await conn.exactly(2)
        *blocks, pending = pending.split(b"\r\n\r\n")
        for block in blocks:
            fields = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line)
            if b"id" in fields:
                watcher.saw(int(fields[b"id"].rsplit(b":", 1)[1]))
                if fields.get(b"event") == b"snapshot":
                    watcher.ready.set()


async def poll_watcher(host: str, port: int, room: str, token: str, watcher: Watcher) -> None:
    conn = RawHTTP(watcher)
    await conn.open(host, port)
    position = ""
    while True:
        conn.send(
            f"GET /rooms/{room}/presence/poll?timeout=60{position} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        status, headers = await conn.head()
        body = orjson.loads(await conn.exactly(int(headers["content-length"])))
        assert status == 200, body
        position = f"&epoch={body['epoch']}&offset={body['offset']}"
        watcher.saw(body["offset"])
        watcher.ready.set()


async def sio_watcher(session: aiohttp.ClientSession, url: str, token: str, watcher: Watcher) -> None:
    # compress=15 offers permessage-deflate as browsers do (aiohttp's client does not by default).
    async with session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", compress=15) as ws:
        count_bytes(ws, watcher)
        await ws.send_str("40" + json.dumps({"token": token}))
        async for message in ws:
            text: str = message.data
            if text == "2":
                await ws.send_str("3")
            elif text.startswith("40"):
                await ws.send_str('420["join",{}]')
            elif text.startswith("430"):
                ack = orjson.loads(text[3:])[0]
                assert ack["ok"], ack
                watcher.saw(ack["offset"])
                watcher.ready.set()
            elif text.startswith('42["presence"'):
                watcher.saw(orjson.loads(text[2:])[1]["offset"])


def count_bytes(ws: aiohttp.ClientWebSocketResponse, watcher: Watcher) -> None:
    # Count what the TCP stream carries (compressed frames included) by wrapping the
    # connection's protocol; the selector event loop looks `data_received` up on each read.
    protocol = ws._conn.protocol
    received, transport = protocol.data_received, protocol.transport
    write = transport.write

    def counting_received(data: bytes) -> None:
        watcher.bytes_in += len(data)
        received(data)

    def counting_write(data: Any) -> None:
        watcher.bytes_out += len(data)
        write(data)

    protocol.data_received = counting_received  # type: ignore[method-assign]
    transport.write = counting_write  # type: ignore[method-assign]


class Trigger:
    """A joined Socket.IO participant whose `update` is the one measured presence event."""

    def __init__(self) -> None:
        import socketio

        self.sio = socketio.AsyncClient(reconnection=False)

    async def join(self, url: str, token: str) -> None:
        await self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        ack = await self.sio.call("join", {}, timeout=30)
        assert ack["ok"], ack

    async def fire(self) -> None:
        await self.sio.emit("update", {"name": f"tick-{time.time()}"})

    async def close(self) -> None:
        await self.sio.disconnect()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def run_transport(
    kind: str,
    count: int,
    rounds: int,
    url: str,
    server: psutil.Process,
    session: aiohttp.ClientSession,
    issuer: TokenIssuer,
) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    room = f"bench-{kind}"
    watchers = [Watcher() for _ in range(count)]
    trigger = Trigger()
    await trigger.join(url, issuer.mint(identity="trigger", room=room))

    def start(n: int) -> Awaitable[None]:
        token = issuer.mint(identity=f"w{n}", room=room)
        if kind == "sse":
            return sse_watcher(host, int(port), room, token, watchers[n])
        if kind == "longpoll":
            return poll_watcher(host, int(port), room, token, watchers[n])
        return sio_watcher(session, url, token, watchers[n])

    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for first in range(0, count, 50):  # in batches: the listen backlog is finite
        batch = [asyncio.create_task(start(n)) for n in range(first, min(first + 50, count))]
        tasks += batch
        await wait_all([w.ready.wait for w in watchers[first : first + 50]], batch, timeout=120)
    final = max(w.offset for w in watchers)
    await wait_until(lambda: all(w.offset >= final for w in watchers), tasks, timeout=300)
    setup = time.perf_counter() - started

    await asyncio.sleep(0.5)  # let the last re-polls park
    cpu0, t_idle = cpu_seconds(server), time.perf_counter()
    await asyncio.sleep(IDLE_WINDOW)
    idle_rate = (cpu_seconds(server) - cpu0) / (time.perf_counter() - t_idle)

    latencies: list[float] = []
    all_delivered: list[float] = []
    cpu = wire = 0.0
    for _ in range(rounds):
        for watcher in watchers:
            watcher.armed, watcher.arrived = True, None
            watcher.got.clear()
        bytes0 = sum(w.bytes_in + w.bytes_out for w in watchers)
        cpu0 = cpu_seconds(server)
        t0 = time.perf_counter()
        await trigger.fire()
        await wait_all([w.got.wait for w in watchers], tasks, timeout=60)
        all_delivered.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.3)  # long polls send their next request; count it and its parking
        for watcher in watchers:
            watcher.armed = False
        cpu += cpu_seconds(server) - cpu0 - idle_rate * (time.perf_counter() - t0)
        wire += sum(w.bytes_in + w.bytes_out for w in watchers) - bytes0
        latencies += [(w.arrived - t0) * 1000 for w in watchers if w.arrived is not None]
    latencies.sort()
    deliveries = count * rounds

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await trigger.close()
    return {
        "watchers": count,
        "setup_s": round(setup, 2),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p99": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
            "max": round(latencies[-1], 2),
        },
        "rounds": rounds,
        "all_delivered_ms_median": round(statistics.median(all_delivered), 2),
        "server_cpu_s_per_1000_deliveries": round(max(cpu, 0.0) / deliveries * 1000, 4),
        "server_idle_cpu_percent": round(idle_rate * 100, 2),
        "wire_bytes_per_delivery": round(wire / deliveries, 1),
    }


async def wait_all(waits: list[Callable[[], Awaitable[Any]]], tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Wait for every event, failing fast if a watcher task dies."""
    gathered = asyncio.ensure_future(asyncio.gather(*(w() for w in waits)))
    async with asyncio.timeout(timeout):
        while not gathered.done():
            await asyncio.wait([gathered, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    gathered.cancel()
                    raise RuntimeError("a watcher failed") from task.exception()
            tasks = [t for t in tasks if not t.done()]


async def wait_until(condition: Callable[[], bool], tasks: list[asyncio.Task[None]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # setup only: drain the joins' presence traffic
            await asyncio.sleep(0.1)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError("a watcher failed") from task.exception()


def start_server(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "roomwire.signaling.cli", "serve", "--media", "none",
        "--port", str(port), "--secret", SECRET, "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    chosen = [t for t in args.only.split(",") if t]
    unknown = set(chosen) - set(TRANSPORTS)
    if unknown:
        raise SystemExit(f"presence bench: unknown transport(s) {', '.join(sorted(unknown))}")
    raise_fd_limit(2 * max(args.watchers, args.sio_watchers) + 200)  # the server inherits the limit
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(port)
    results: dict[str, Any] = {}
    try:
        await wait_serving(f"{url}/healthz", process.poll)
        server = psutil.Process(process.pid)
        issuer = TokenIssuer(SECRET)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for kind in chosen:
                count = args.sio_watchers if kind == "socketio" else args.watchers
                print(f"presence bench: {count} {kind} watchers ...", file=sys.stderr, flush=True)
                results[kind] = await run_transport(kind, count, args.rounds, url, server, session, issuer)
                print(f"  {kind}: {json.dumps(results[kind])}", flush=True)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"benchmark": "presence", "cpus": os.cpu_count(), "results": results}


def report(summary: dict[str, Any]) -> None:
    rows = [
        ("latency p50 (ms)", lambda r: r["latency_ms"]["p50"]),
        ("latency p99 (ms)", lambda r: r["latency_ms"]["p99"]),
        ("latency max (ms)", lambda r: r["latency_ms"]["max"]),
        ("server CPU s / 1,000 deliveries", lambda r: r["server_cpu_s_per_1000_deliveries"]),
        ("wire bytes / delivered event", lambda r: r["wire_bytes_per_delivery"]),
        ("server idle CPU (%)", lambda r: r["server_idle_cpu_percent"]),
        ("all delivered, median (ms)", lambda r: r["all_delivered_ms_median"]),
        ("setup (s)", lambda r: r["setup_s"]),
    ]
    kinds = list(summary["results"])
    print("\nwatchers of one room per transport; presence events one at a time")
    print(f"{'':34}" + "".join(f"{k:>12}" for k in kinds))
    print(f"{'watchers':34}" + "".join(f"{summary['results'][k]['watchers']:>12}" for k in kinds))
    for label, value in rows:
        print(f"{label:34}" + "".join(f"{value(summary['results'][k]):>12}" for k in kinds))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000, help="watchers per transport (default 1000)")
    parser.add_argument("--sio-watchers", type=int, default=400, help="Socket.IO watchers (default 400: setup is N^2)")
    parser.add_argument("--rounds", type=int, default=10, help="presence events per transport, one at a time")
    parser.add_argument("--only", default=",".join(TRANSPORTS), help="comma-separated subset of sse,longpoll,socketio")
    summary = asyncio.run(main(parser.parse_args()))
    report(summary)
    print(json.dumps(summary))
