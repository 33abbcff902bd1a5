"""One scenario of bench/signaling.py against one server: phases driven by bench/node/loadgen.mjs
(the official socket.io-client in a Node process), the server's CPU metered around each.

Phases, the same for every server:
  warm-up   a room of WARMUP_CLIENTS joins, updates and signals, then leaves: every code path
            is loaded and V8 has optimised the Node server's hot functions before any figure
  connect   the scenario's clients open their WebSockets
  join      they `join` (their rooms), `join_in_flight` at a time; done when every member has
            seen its room's last join
  idle      `idle_seconds` of quiet: the server's CPU here is heartbeats (Engine.IO ping/pong
            every 3 s per connection, counted by the clients); then its RSS growth since before
            `connect`, per connection. The heartbeats go on in every phase: each phase's CPU
            per operation is counted without them (less the idle CPU rate times its duration)
  fan-out   `updates` updates from members in turn, `update_in_flight` at a time, each
            delivered to the sender's whole room; done when every delivery has arrived
  signal    `signals` offer -> answer round trips between members of a pair, `signal_in_flight`
            at a time, each carrying `signal_bytes` of SDP
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

WARMUP_CLIENTS = 20
COMMAND_TIMEOUT = 300.0  # seconds: a bounded run even when a server stops answering


@dataclass(frozen=True)
class Scenario:
    name: str
    rooms: int
    per_room: int  # even: signal pairs stay within a room
    join_in_flight: int
    idle_seconds: float
    updates: int
    update_in_flight: int
    update_bytes: int  # metadata of each update
    signals: int
    signal_in_flight: int
    signal_bytes: int  # SDP of each offer and answer
    connect_in_flight: int = 50

    @property
    def clients(self) -> int:
        return self.rooms * self.per_room


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of every thread of the process, to the nanosecond (Linux schedstat); psutil's
    user + system time counts in 10 ms ticks, too coarse for the shorter phases."""
    total = 0
    for thread in Path(f"/proc/{process.pid}/task").iterdir():
        try:
            total += int((thread / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return total / 1e9


@dataclass
class Phase:
    server_cpu: float  # seconds
    loadgen_cpu: float
    wall: float
    answer: dict[str, Any]


@dataclass
class ScenarioResult:
    scenario: Scenario
    phases: dict[str, Phase] = field(default_factory=dict)
    idle_bytes_per_conn: float = 0.0
    errors: list[str] = field(default_factory=list)

    def background(self) -> float:
        """The server's CPU per second while idle: its heartbeats, which go on in every phase."""
        idle = self.phases.get("idle")
        return idle.server_cpu / idle.wall if idle and idle.wall else 0.0

    def _answer(self, phase: str) -> dict[str, Any]:
        """What the load generator answered for the phase ({} for a phase that did not finish)."""
        measured = self.phases.get(phase)
        return measured.answer if measured else {}

    def _per(self, phase: str, count: float, scale: float) -> float:
        """Server CPU per operation of the phase, less its heartbeats (the idle phase's own figure)."""
        measured = self.phases.get(phase)
        if not measured or not count:
            return 0.0
        cpu = measured.server_cpu - (0.0 if phase == "idle" else self.background() * measured.wall)
        return round(max(cpu, 0.0) * scale / count, 2)

    def figures(self) -> dict[str, float]:
        join = self._answer("join").get("ack_ms", [])
        update = self._answer("fanout")
        signal = self._answer("signal").get("rtt_ms", [])
        return {
            # server CPU per operation: what each costs the server, whatever else ran meanwhile
            "join_cpu_ms": self._per("join", len(join), 1e3),
            "fanout_cpu_us": self._per("fanout", update.get("deliveries", 0), 1e6),
            "signal_cpu_us": self._per("signal", len(signal), 1e6),
            "heartbeat_cpu_us": self._per("idle", self._answer("idle").get("pings", 0), 1e6),
            "idle_kib_per_conn": round(self.idle_bytes_per_conn / 1024, 1),
            # under load, on a shared machine: indicative only
            "join_ack_p50_ms": round(percentile(join, 50), 1),
            "update_ack_p50_ms": round(percentile(update.get("ack_ms", []), 50), 1),
            "signal_rtt_p50_ms": round(percentile(signal, 50), 1),
        }

    def cpu_shares(self) -> dict[str, dict[str, float]]:
        """Per phase: the fraction of one core each side used (near 1.0 = that side is the bound)."""
        return {
            name: {"server": round(p.server_cpu / p.wall, 2), "loadgen": round(p.loadgen_cpu / p.wall, 2)}
            for name, p in self.phases.items()
        }


class LoadGenerator:
    """bench/node/loadgen.mjs in its own process, one command at a time."""

    def __init__(self, script: Path) -> None:
        self.script = script
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, url: str, clients: list[dict[str, str]]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(self.script), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )  # fmt: skip
        await self._send({"url": url, "clients": clients})

    async def _send(self, line: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(line).encode() + b"\n")
        await self.proc.stdin.drain()

    async def command(self, cmd: str, **options: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        await self._send({"cmd": cmd, **options})
        raw = await asyncio.wait_for(self.proc.stdout.readline(), COMMAND_TIMEOUT)
        if not raw:
            raise RuntimeError(f"the load generator exited during {cmd!r} (code {await self.proc.wait()})")
        return json.loads(raw)

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.command("close")
            await asyncio.wait_for(self.proc.wait(), 10)
        except (TimeoutError, RuntimeError, BrokenPipeError, ConnectionResetError):
            pass
        if self.proc.returncode is None:  # interrupted: never leave thousands of sockets behind
            self.proc.kill()
            await self.proc.wait()


async def metered(
    server: psutil.Process, gen: LoadGenerator, result: ScenarioResult, name: str, cmd: str, **options: Any
) -> None:
    assert gen.proc is not None
    loadgen = psutil.Process(gen.proc.pid)
    start = (time.perf_counter(), cpu_seconds(server), cpu_seconds(loadgen))
    answer = await gen.command(cmd, **options)
    server_cpu, loadgen_cpu = cpu_seconds(server) - start[1], cpu_seconds(loadgen) - start[2]
    result.phases[name] = Phase(server_cpu, loadgen_cpu, time.perf_counter() - start[0], answer)
    result.errors += [f"{name}: {e}" for e in answer.get("errors", [])]


async def warm_up(url: str, script: Path, tokens: list[dict[str, str]]) -> None:
    gen = LoadGenerator(script)
    await gen.start(url, tokens)
    try:
        await gen.command("connect", inFlight=10)
        await gen.command("join", inFlight=5)
        await gen.command("update", count=200, inFlight=5, bytes=200)
        await gen.command("signal", count=400, inFlight=5, bytes=1000)
    finally:
        await gen.close()


async def run_scenario(
    url: str, server: psutil.Process, script: Path, scenario: Scenario, clients: list[dict[str, str]],
    warmup: list[dict[str, str]],
) -> ScenarioResult:  # fmt: skip
    result = ScenarioResult(scenario)
    await warm_up(url, script, warmup)
    await asyncio.sleep(1)  # the warm-up's leaves are done
    rss_before = server.memory_info().rss
    gen = LoadGenerator(script)
    await gen.start(url, clients)
    s = scenario
    phases: list[tuple[str, str, dict[str, Any]]] = [
        ("connect", "connect", {"inFlight": s.connect_in_flight}),
        ("join", "join", {"inFlight": s.join_in_flight}),
        ("idle", "idle", {"seconds": s.idle_seconds}),
        ("fanout", "update", {"count": s.updates, "inFlight": s.update_in_flight, "bytes": s.update_bytes}),
        ("signal", "signal", {"count": s.signals, "inFlight": s.signal_in_flight, "bytes": s.signal_bytes}),
    ]
    try:
        for name, cmd, options in phases:
            try:
                await metered(server, gen, result, name, cmd, **options)
            except TimeoutError:  # the server stopped answering: its figures end here
                result.errors.append(f"{name}: not done within {COMMAND_TIMEOUT:.0f} s; later phases skipped")
                break
            if name == "idle":
                result.idle_bytes_per_conn = (server.memory_info().rss - rss_before) / s.clients
    finally:
        await gen.close()
    return result
