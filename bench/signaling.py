"""Signaling benchmark: roomwire against a minimal Node socket.io server, side by side, in one run.

    .venv/bin/python bench/signaling.py [--scenarios room300,room2000,idle10k] [--only roomwire|node]
    .venv/bin/python bench/signaling.py --before /path/to/other/checkout/.venv/bin/python

For each scenario, each server runs as its own process (roomwire through its CLI, `roomwire serve
--dev --media none`; Node through bench/node/server.mjs), one after the other so that they never
share the CPU, driven by the same load generator (bench/node/loadgen.mjs, socket.io-client).
Scenarios:
  room300   300 clients in one room
  room2000  2,000 clients in one room
  idle10k   10,000 connections spread over 500 rooms of 20
Figures per scenario (bench/signaling_load.py says how each phase runs): server CPU per join, per
presence fan-out delivery, per signal round trip (1 KB of SDP each way) and per heartbeat (an
Engine.IO ping/pong), RSS per idle connection, and ack latencies under load; each side by side
with Node and as a ratio (and, with --before, beside another roomwire: that interpreter's install,
e.g. a checkout of main, in the same run). Human-readable lines first; the JSON object is the
last line.
Needs `npm ci --prefix bench/node` once. About four minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import uvloop

REPO = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on the path, where this very file would shadow the
# `signaling` package: the repository root goes there instead.
sys.path[0] = str(REPO)

from roomwire.signaling.tokens import TokenIssuer  # noqa: E402

from bench.serving import free_port, wait_serving  # noqa: E402
from bench.signaling_load import WARMUP_CLIENTS, Scenario, ScenarioResult, run_scenario  # noqa: E402

NODE_DIR = REPO / "bench" / "node"
LOADGEN = NODE_DIR / "loadgen.mjs"
# A server with 10,000 connections that just closed says goodbye to each: give it time.
STOP_SECONDS = 30

SCENARIOS = {
    s.name: s
    for s in [
        # one operation at a time: each is handled alone, as in a room where people come and go
        Scenario("room300", rooms=1, per_room=300, join_in_flight=1, idle_seconds=9,
                 updates=300, update_in_flight=1, update_bytes=300,
                 signals=3000, signal_in_flight=1, signal_bytes=1000),
        # 2 joins at a time: at 10, Node's server outran the one-process load generator, whose
        # clients then read pings seconds late and dropped ("ping timeout"); ~2 minutes per server
        Scenario("room2000", rooms=1, per_room=2000, join_in_flight=2, idle_seconds=9,
                 updates=60, update_in_flight=1, update_bytes=300,
                 signals=3000, signal_in_flight=1, signal_bytes=1000),
        Scenario("idle10k", rooms=500, per_room=20, join_in_flight=50, idle_seconds=9,
                 updates=1000, update_in_flight=1, update_bytes=300,
                 signals=3000, signal_in_flight=1, signal_bytes=1000, connect_in_flight=100),
    ]
}  # fmt: skip


@dataclass
class Target:
    name: str
    command: list[str]
    port: int
    proc: asyncio.subprocess.Process | None = None
    log: IO[bytes] | None = None

    def errors(self) -> str:
        """What the server wrote to stderr (its last 2,000 characters)."""
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def target(name: str, secret: str, before: str | None) -> Target:
    port = free_port()
    if name in ("roomwire", "before"):
        python = sys.executable if name == "roomwire" else before
        command = [
            python, "-m", "roomwire.signaling.cli", "serve", "--dev", "--media", "none",
            "--port", str(port), "--secret", secret, "--log-level", "warning",
        ]  # fmt: skip
    else:
        command = ["node", str(NODE_DIR / "server.mjs"), "--port", str(port), "--secret", secret]
    return Target(name, command, port)


async def start(target: Target) -> None:
    # stderr to a file, not a pipe: a server that logs a lot must never block on a full pipe.
    target.log = tempfile.TemporaryFile()
    target.proc = await asyncio.create_subprocess_exec(
        *target.command, cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=target.log
    )
    try:
        await wait_serving(f"{target.url}/healthz", lambda: target.proc.returncode)
    except RuntimeError as exc:
        raise SystemExit(f"bench: {target.name} server: {exc}: {target.errors()}") from None


async def stop(target: Target) -> None:
    """SIGTERM, then SIGKILL if the server is still there after STOP_SECONDS."""
    if target.proc is not None and target.proc.returncode is None:
        target.proc.terminate()
        try:
            await asyncio.wait_for(target.proc.wait(), STOP_SECONDS)
        except TimeoutError:
            target.proc.kill()
            await target.proc.wait()


def clients(issuer: TokenIssuer, rooms: int, per_room: int, prefix: str = "r") -> list[dict[str, str]]:
    """A token for every client, room by room (a room's members are contiguous)."""
    return [
        {"token": issuer.mint(identity=f"c{i}", room=f"{prefix}{r}", name=f"client {i}"), "room": f"{prefix}{r}",
         "identity": f"c{i}"}
        for r in range(rooms)
        for i in range(per_room)
    ]  # fmt: skip


async def measure(
    name: str, secret: str, before: str | None, scenario: Scenario, issuer: TokenIssuer, tokens: Any
) -> ScenarioResult:
    server = target(name, secret, before)
    await start(server)
    assert server.proc is not None
    try:
        warmup = clients(issuer, 1, WARMUP_CLIENTS, prefix="warmup")
        result = await run_scenario(server.url, psutil.Process(server.proc.pid), LOADGEN, scenario, tokens, warmup)
        await stop(server)
        if server.proc.returncode not in (0, -signal.SIGTERM):
            result.errors.append(f"the server exited with {server.proc.returncode}: {server.errors()[-500:]}")
    finally:
        await stop(server)
        if server.log is not None:
            server.log.close()
    return result


FIGURES: list[tuple[str, str]] = [
    ("join_cpu_ms", "server CPU per join (ms)"),
    ("fanout_cpu_us", "server CPU per fan-out delivery (us)"),
    ("signal_cpu_us", "server CPU per signal round trip (us)"),
    ("heartbeat_cpu_us", "server CPU per heartbeat (us)"),
    ("idle_kib_per_conn", "memory per idle connection (KiB)"),
    ("join_ack_p50_ms", "join ack p50 (ms)"),
    ("update_ack_p50_ms", "update ack p50 (ms)"),
    ("signal_rtt_p50_ms", "signal round trip p50 (ms)"),
]


def ratios(figures: dict[str, dict[str, float]], other: str) -> dict[str, float | None]:
    """roomwire's figures over another server's, figure by figure (None where one is missing)."""
    if "roomwire" not in figures or other not in figures:
        return {key: None for key, _ in FIGURES}
    mine, theirs = figures["roomwire"], figures[other]
    return {key: round(mine[key] / theirs[key], 2) if theirs[key] else None for key, _ in FIGURES}


def report(scenario: Scenario, results: dict[str, ScenarioResult]) -> dict[str, Any]:
    figures = {name: result.figures() for name, result in results.items()}
    ratio = ratios(figures, "node")
    print(f"\n{scenario.name}: {scenario.clients} clients in {scenario.rooms} room(s) of {scenario.per_room}")
    columns = ["roomwire", "node"] + (["before"] if "before" in figures else [])
    print(f"{'':40} {' '.join(f'{name:>10}' for name in columns)} {'ratio':>7}")
    for key, label in FIGURES:
        cells = [f"{figures[name][key]:>10}" if name in figures else f"{'-':>10}" for name in columns]
        print(f"{label:40} {' '.join(cells)} {ratio[key]!s:>7}")
    for name, result in results.items():
        shares = ", ".join(f"{p} {c['server']:.0%}/{c['loadgen']:.0%}" for p, c in result.cpu_shares().items())
        print(f"  {name}: share of one core, server/load generator: {shares}")
        if result.errors:
            print(f"  ERRORS against {name}: {result.errors[:10]}")
    return {
        "clients": scenario.clients,
        "rooms": scenario.rooms,
        **figures,
        "ratio_roomwire_over_node": ratio,
        "ratio_roomwire_over_before": ratios(figures, "before"),
        "cpu_share": {name: r.cpu_shares() for name, r in results.items()},
        "errors": {name: r.errors for name, r in results.items()},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--only", choices=["roomwire", "node"], help="measure one server (no ratio)")
    parser.add_argument("--before", metavar="PYTHON", help="also measure the roomwire installed for this interpreter")
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios.split(",")
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


async def main(args: argparse.Namespace) -> int:
    if not (NODE_DIR / "node_modules").is_dir():
        print(f"bench: run `npm ci --prefix {NODE_DIR.relative_to(REPO)}` first", file=sys.stderr)
        return 2
    secret = secrets.token_urlsafe(32)
    issuer = TokenIssuer(secret)
    load_before = os.getloadavg()[0]
    out: dict[str, Any] = {"benchmark": "signaling", "scenarios": {}}
    for name in args.scenarios:
        scenario = SCENARIOS[name]
        tokens = clients(issuer, scenario.rooms, scenario.per_room)
        results: dict[str, ScenarioResult] = {}
        for server in ("roomwire", "node", "before"):
            if (args.only and server != args.only) or (server == "before" and not args.before):
                continue
            print(f"bench: {name} against {server} ...", file=sys.stderr, flush=True)
            results[server] = await measure(server, secret, args.before, scenario, issuer, tokens)
        out["scenarios"][name] = report(scenario, results)
    out["load_average_1m"] = {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)}
    print(f"\nload average (1 min) at start {load_before:.2f}, at end {os.getloadavg()[0]:.2f}")
    print(json.dumps(out), flush=True)
    return 0


def raise_open_files_limit() -> None:
    # 10,000 connections: the server and the load generator inherit this process's limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(coroutine: Callable[[], Awaitable[int]]) -> int:
    raise_open_files_limit()

    async def cancellable() -> int:
        # SIGTERM (e.g. from `timeout`) unwinds through the `finally`s that stop the servers.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coroutine()
        except asyncio.CancelledError:
            print("bench: interrupted", file=sys.stderr)
            return 1

    return uvloop.run(cancellable())


if __name__ == "__main__":
    parsed = parse_args()
    sys.exit(run(lambda: main(parsed)))
