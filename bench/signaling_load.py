"""The load generators of bench/signaling.py: one scenario, run by Python or by Node clients.

Phases (the same for every server and both generators):
  warm-up   one client joins and updates in another room (code paths loaded, caches warm)
  connect   N clients connect over WebSocket, 25 at a time
  join      the N clients `join`, J at a time (a crowd arriving, not one packet storm); ack
            latency per join; then wait until every member has seen the last join's presence
  idle      2 s of quiet, then the server's RSS growth since before `connect` / N
  fan-out   every member sends U `update`s at once; done when all N*N*U presence deliveries
            have arrived
  signal    N/2 pairs, concurrently, each R times: A sends `signal` offer to B, B's handler
            answers, A stops the clock when the answer arrives
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import socketio

CONNECT_CONCURRENCY = 25
ANSWER_TIMEOUT = 10  # seconds; a lost answer is an error, not a reason to stall the run
# A realistic trickled ICE candidate: most signaling traffic looks like this.
CANDIDATE = "candidate:842163049 1 udp 1677729535 192.0.2.10 49203 typ srflx raddr 10.0.0.5 rport 49203 generation 0"


@dataclass(frozen=True)
class Scenario:
    updates: int = 2  # `update`s per member in the fan-out phase
    rounds: int = 10  # signal round trips per pair, one after another
    join_concurrency: int = 10  # joins in flight at once


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class LoadResult:
    join_ms: list[float] = field(default_factory=list)
    fanout_deliveries: int = 0
    fanout_seconds: float = 0.0
    signal_ms: list[float] = field(default_factory=list)
    idle_bytes_per_conn: float = 0.0
    # phase -> (server CPU seconds, load generator CPU seconds, wall seconds)
    cpu: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def server_cpu(self, phase: str) -> float:
        return self.cpu.get(phase, (0.0, 0.0, 0.0))[0]

    def cpu_shares(self) -> dict[str, dict[str, float]]:
        """Per phase: the fraction of one core each side used (near 1.0 = that side is the bound)."""
        return {
            phase: {"server": round(server / wall, 2), "loadgen": round(loadgen / wall, 2), "wall_s": round(wall, 2)}
            for phase, (server, loadgen, wall) in self.cpu.items()
        }

    def figures(self) -> dict[str, float]:
        return {
            "join_p50_ms": round(percentile(self.join_ms, 50), 2),
            "join_p99_ms": round(percentile(self.join_ms, 99), 2),
            "fanout_per_s": round(self.fanout_deliveries / self.fanout_seconds) if self.fanout_seconds else 0,
            "fanout_deliveries": self.fanout_deliveries,
            "fanout_s": round(self.fanout_seconds, 3),
            "signal_rtt_p50_ms": round(percentile(self.signal_ms, 50), 2),
            "signal_rtt_p99_ms": round(percentile(self.signal_ms, 99), 2),
            "idle_kib_per_conn": round(self.idle_bytes_per_conn / 1024, 1),
            # Server CPU time per operation: what each costs the server, whatever else the
            # machine was doing meanwhile (wall-clock figures suffer from a busy machine).
            "join_cpu_ms": round(self.server_cpu("join") * 1000 / max(1, len(self.join_ms)), 3),
            "fanout_cpu_us": round(self.server_cpu("fanout") * 1e6 / max(1, self.fanout_deliveries), 2),
            "signal_cpu_us": round(self.server_cpu("signal") * 1e6 / max(1, len(self.signal_ms)), 1),
        }


class CpuMeter:
    """CPU time of the server and of the load generator over named phases."""

    def __init__(self, server: psutil.Process, loadgen: psutil.Process, result: LoadResult) -> None:
        self.server, self.loadgen, self.result = server, loadgen, result
        self._start: tuple[float, float, float] | None = None

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def begin(self) -> None:
        self._start = (time.perf_counter(), self._cpu(self.server), self._cpu(self.loadgen))

    def end(self, phase: str) -> None:
        assert self._start is not None
        wall = time.perf_counter() - self._start[0]
        server = self._cpu(self.server) - self._start[1]
        loadgen = self._cpu(self.loadgen) - self._start[2]
        self.result.cpu[phase] = (server, loadgen, wall)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.begin()
        yield
        self.end(name)


class Member:
    """One python-socketio client; counts presence and answers offers."""

    def __init__(self, swarm: PythonLoad, token: str) -> None:
        self.swarm = swarm
        self.token = token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.max_offset = 0
        self.answers: dict[int, asyncio.Future[float]] = {}
        self.sio.on("presence", self.on_presence)
        self.sio.on("signal", self.on_signal)
        self.sio.on("disconnect", self.on_disconnect)

    async def on_presence(self, event: dict[str, Any]) -> None:
        self.max_offset = max(self.max_offset, event["offset"])
        self.swarm.progressed()
        if event["type"] == "update":
            self.swarm.delivered()

    async def on_signal(self, message: dict[str, Any]) -> None:
        if message["type"] == "offer":
            reply = {"to": message["from"], "type": "answer", "data": message["data"]}
            await self.sio.emit("signal", reply, callback=self.swarm.check_ack)
            return
        waiter = self.answers.pop(message["data"]["n"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(time.perf_counter())

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        try:
            ack = await self.sio.call(event, data, timeout=60)
        except socketio.exceptions.SocketIOError as exc:
            self.swarm.error(f"{event}: {exc!r}")
            return {}
        self.swarm.check_ack(ack)
        return ack

    async def on_disconnect(self, reason: Any = None) -> None:
        if reason != self.sio.reason.CLIENT_DISCONNECT:
            self.swarm.error(f"disconnected: {reason}")


class PythonLoad:
    """python-socketio AsyncClients (WebSocket transport) in this process."""

    def __init__(self) -> None:
        self.result = LoadResult()
        self._expected = 0
        self._seen = 0
        self._all_seen: asyncio.Future[float] | None = None
        self._progress = asyncio.Event()

    def progressed(self) -> None:
        self._progress.set()

    async def all_reach(self, members: list[Member], offset: int) -> None:
        """Until every member has seen the presence event at `offset`."""
        while any(m.max_offset < offset for m in members):
            self._progress.clear()
            await self._progress.wait()

    def delivered(self) -> None:
        self._seen += 1
        if self._seen == self._expected and self._all_seen is not None and not self._all_seen.done():
            self._all_seen.set_result(time.perf_counter())

    def check_ack(self, ack: Any) -> None:
        if not (isinstance(ack, dict) and ack.get("ok")):
            self.error(json.dumps(ack)[:200])

    def error(self, message: str) -> None:
        if len(self.result.errors) < 20:  # the first few say what went wrong; more is noise
            self.result.errors.append(message)

    async def run(
        self, url: str, server: psutil.Process, tokens: list[str], warmup: str, *, scenario: Scenario
    ) -> LoadResult:
        updates, rounds = scenario.updates, scenario.rounds
        result = self.result
        meter = CpuMeter(server, psutil.Process(), result)
        first = Member(self, warmup)
        await first.sio.connect(url, auth={"token": warmup}, transports=["websocket"], wait_timeout=10)
        await first.call("join", {})
        await first.call("update", {"metadata": {"warm": True}})
        await first.sio.disconnect()

        members = [Member(self, token) for token in tokens]
        rss_before = server.memory_info().rss
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(member: Member) -> None:
            async with gate:
                await member.sio.connect(url, auth={"token": member.token}, transports=["websocket"], wait_timeout=30)

        with meter.phase("connect"):
            await asyncio.gather(*(connect(m) for m in members))

        arrivals = asyncio.Semaphore(scenario.join_concurrency)

        async def join(member: Member) -> int:
            async with arrivals:
                start = time.perf_counter()
                ack = await member.call("join", {})
                result.join_ms.append((time.perf_counter() - start) * 1000)
            return int(ack.get("offset", 0))

        with meter.phase("join"):
            last = max(await asyncio.gather(*(join(m) for m in members)))
            try:
                await asyncio.wait_for(self.all_reach(members, last), 60)
            except TimeoutError:
                self.error(f"join: not every member saw presence offset {last} within 60 s")

        await asyncio.sleep(2)
        result.idle_bytes_per_conn = (server.memory_info().rss - rss_before) / len(members)

        self._seen = 0  # the warm-up client counted its own update
        self._expected = len(members) * len(members) * updates
        self._all_seen = asyncio.get_running_loop().create_future()

        async def send_updates(index: int, member: Member) -> None:
            for n in range(updates):
                await member.call("update", {"metadata": {"n": n, "i": index}})

        with meter.phase("fanout"):
            start = time.perf_counter()
            await asyncio.gather(*(send_updates(i, m) for i, m in enumerate(members)))
            try:
                finished = await asyncio.wait_for(self._all_seen, 60)
            except TimeoutError:
                self.error(f"fan-out: {self._seen} of {self._expected} deliveries within 60 s")
                finished = time.perf_counter()
        result.fanout_deliveries = self._seen
        result.fanout_seconds = finished - start

        async def ping_pong(a: Member, b: Member, pair: int) -> None:
            identity = f"c{2 * pair + 1}"
            for r in range(rounds):
                n = pair * rounds + r
                waiter = asyncio.get_running_loop().create_future()
                a.answers[n] = waiter
                start = time.perf_counter()
                ack = await a.call(
                    "signal", {"to": identity, "type": "offer", "data": {"n": n, "candidate": CANDIDATE}}
                )
                if not ack.get("ok"):
                    continue  # counted as an error; no answer will come
                try:
                    answered = await asyncio.wait_for(waiter, ANSWER_TIMEOUT)
                except TimeoutError:
                    self.error(f"signal {n}: no answer within {ANSWER_TIMEOUT} s")
                    continue
                result.signal_ms.append((answered - start) * 1000)

        with meter.phase("signal"):
            pairs = [(members[i], members[i + 1]) for i in range(0, len(members), 2)]
            await asyncio.gather(*(ping_pong(a, b, p) for p, (a, b) in enumerate(pairs)))

        await asyncio.gather(*(m.sio.disconnect() for m in members))
        return result


class NodeLoad:
    """bench/node/loadgen.mjs (the official socket.io-client) in a Node process.

    The script prints one JSON line per phase boundary (`{"phase", "at": "start"|"end"}`), so
    CPU is metered here exactly as for PythonLoad; after the idle phase it waits for a line on
    stdin, which is sent once the server's RSS has been read. Its last line is the figures.
    """

    def __init__(self, node_dir: Path) -> None:
        self.script = node_dir / "loadgen.mjs"

    async def run(
        self, url: str, server: psutil.Process, tokens: list[str], warmup: str, *, scenario: Scenario
    ) -> LoadResult:
        result = LoadResult()
        config = json.dumps(
            {
                "url": url,
                "tokens": tokens,
                "warmup": warmup,
                "updates": scenario.updates,
                "rounds": scenario.rounds,
                "joinConcurrency": scenario.join_concurrency,
            }
        )
        proc = await asyncio.create_subprocess_exec(
            "node", str(self.script), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stderr = asyncio.create_task(proc.stderr.read())
        proc.stdin.write(config.encode() + b"\n")
        await proc.stdin.drain()
        try:
            await self._follow(proc, server, result, len(tokens))
        finally:
            if proc.returncode is None:  # interrupted: never leave 200 sockets behind
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            tail = (await stderr).decode(errors="replace").strip()[-500:]
            result.errors.append(f"node load generator exited with {proc.returncode}: {tail}")
        return result

    async def _follow(
        self, proc: asyncio.subprocess.Process, server: psutil.Process, result: LoadResult, clients: int
    ) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        meter = CpuMeter(server, psutil.Process(proc.pid), result)
        rss_before = 0
        async for raw in proc.stdout:
            line = json.loads(raw)
            if line.get("at") == "start":
                if line["phase"] == "connect":
                    rss_before = server.memory_info().rss
                meter.begin()
            elif line.get("at") == "end":
                meter.end(line["phase"])
            elif line.get("idle"):
                result.idle_bytes_per_conn = (server.memory_info().rss - rss_before) / clients
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
            elif "result" in line:
                figures = line["result"]
                result.join_ms = figures["join_ms"]
                result.signal_ms = figures["signal_ms"]
                result.fanout_deliveries = figures["fanout_deliveries"]
                result.fanout_seconds = figures["fanout_seconds"]
                result.errors = figures["errors"]
        await proc.wait()
