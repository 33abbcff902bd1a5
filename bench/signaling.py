"""Signaling benchmark: roomwire against a minimal Node socket.io relay, in the same run.

    .venv/bin/python bench/signaling.py [--clients 200] [--updates 2] [--rounds 10]
                                        [--join-concurrency 10] [--loadgen node|python]
                                        [--only roomwire|node]

Both servers run as their own processes (roomwire through its CLI, `roomwire serve --dev
--media none`; Node through bench/node/server.mjs), one after the other so they never share the
CPU. One load generator drives both the same way: bench/node/loadgen.mjs (socket.io-client) in
a Node process by default, because python-socketio clients in one process saturate a core
before the Node server does; or `--loadgen python`, AsyncClients on uvloop in this process.
Figures:
  join         all clients join one room, 10 in flight at a time: ack latency p50/p99
  fan-out      every member sends `update`s; each presence event reaches every member:
               deliveries per second until the last one arrived
  signal       pairs relay offer -> answer through the server: round trip p50/p99
  memory       server RSS growth per connected, joined, idle client
and the CPU each side burnt per phase, which says whether the server or the load generator
was the bound. Human-readable lines first; the JSON object is the last line.
Needs `npm ci --prefix bench/node` once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
from bench.signaling_load import LoadResult, NodeLoad, PythonLoad, Scenario  # noqa: E402

NODE_DIR = REPO / "bench" / "node"


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


def targets(secret: str) -> list[Target]:
    roomwire_port, node_port = free_port(), free_port()
    roomwire = [
        sys.executable, "-m", "roomwire.signaling.cli", "serve", "--dev", "--media", "none",
        "--port", str(roomwire_port), "--secret", secret, "--log-level", "warning",
    ]  # fmt: skip
    node = ["node", str(NODE_DIR / "server.mjs"), "--port", str(node_port), "--secret", secret]
    return [Target("roomwire", roomwire, roomwire_port), Target("node", node, node_port)]


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
    if target.proc is not None and target.proc.returncode is None:
        target.proc.terminate()
        try:
            await asyncio.wait_for(target.proc.wait(), 10)
        except TimeoutError:
            target.proc.kill()
            await target.proc.wait()
    if target.log is not None:
        target.log.close()


async def measure(target: Target, args: argparse.Namespace, issuer: TokenIssuer) -> LoadResult:
    await start(target)
    assert target.proc is not None
    try:
        server = psutil.Process(target.proc.pid)
        tokens = [issuer.mint(identity=f"c{i}", room="bench", name=f"client {i}") for i in range(args.clients)]
        warmup = issuer.mint(identity="warm", room="warmup")
        load = PythonLoad() if args.loadgen == "python" else NodeLoad(NODE_DIR)
        scenario = Scenario(updates=args.updates, rounds=args.rounds, join_concurrency=args.join_concurrency)
        return await load.run(target.url, server, tokens, warmup, scenario=scenario)
    finally:
        await stop(target)


FIGURES: list[tuple[str, str, str]] = [
    # (key, label, unit); for every one but fan-out, lower is better
    ("join_p50_ms", "join latency p50", "ms"),
    ("join_p99_ms", "join latency p99", "ms"),
    ("fanout_per_s", "presence fan-out", "deliveries/s"),
    ("signal_rtt_p50_ms", "signal round trip p50", "ms"),
    ("signal_rtt_p99_ms", "signal round trip p99", "ms"),
    ("idle_kib_per_conn", "memory per idle connection", "KiB"),
    ("join_cpu_ms", "server CPU per join", "ms"),
    ("fanout_cpu_us", "server CPU per fan-out delivery", "us"),
    ("signal_cpu_us", "server CPU per signal round trip", "us"),
]


def report(results: dict[str, LoadResult], args: argparse.Namespace) -> dict[str, Any]:
    figures = {name: result.figures() for name, result in results.items()}
    ratio = {
        key: round(figures["roomwire"][key] / figures["node"][key], 2) if figures["node"][key] else None
        for key, _, _ in FIGURES
    }
    print(f"signaling benchmark: {args.clients} clients, load generator: {args.loadgen}", flush=True)
    print(f"{'':30} {'roomwire':>12} {'node':>12} {'ratio':>8}")
    for key, label, unit in FIGURES:
        line = f"{label + ' (' + unit + ')':30} {figures['roomwire'][key]:>12} {figures['node'][key]:>12}"
        print(f"{line} {ratio[key]!s:>8}")
    for name, result in results.items():
        shares = result.cpu_shares().items()
        cpu = ", ".join(f"{phase} server {c['server']:.0%} / loadgen {c['loadgen']:.0%}" for phase, c in shares)
        print(f"share of one core, {name}: {cpu}")
        if result.errors:
            print(f"ERRORS against {name}: {result.errors}")
    return {
        "benchmark": "signaling",
        "clients": args.clients,
        "updates_per_client": args.updates,
        "signal_rounds_per_pair": args.rounds,
        "join_concurrency": args.join_concurrency,
        "loadgen": args.loadgen,
        "roomwire": figures["roomwire"],
        "node": figures["node"],
        "ratio_roomwire_over_node": ratio,
        "cpu_share": {name: r.cpu_shares() for name, r in results.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
        "errors": {name: r.errors for name, r in results.items()},
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200, help="clients joining the one room (even, >= 2)")
    parser.add_argument("--updates", type=int, default=2, help="`update` events each member sends (fan-out)")
    parser.add_argument("--rounds", type=int, default=10, help="signal round trips per pair, in sequence")
    parser.add_argument("--join-concurrency", type=int, default=10, help="joins in flight at once")
    parser.add_argument(
        "--loadgen",
        choices=["python", "node"],
        default="node",
        help="node (default): socket.io-client; python: python-socketio on uvloop",
    )
    parser.add_argument("--only", choices=["roomwire", "node"], help="measure one server (no ratio)")
    args = parser.parse_args(argv)
    if args.clients < 2 or args.clients % 2:
        parser.error("--clients must be an even number >= 2 (signal runs in pairs)")
    if min(args.updates, args.rounds, args.join_concurrency) < 1:
        parser.error("--updates, --rounds and --join-concurrency must be at least 1")
    return args


async def main(args: argparse.Namespace) -> int:
    if not (NODE_DIR / "node_modules").is_dir():
        print(f"bench: run `npm ci --prefix {NODE_DIR.relative_to(REPO)}` first", file=sys.stderr)
        return 2
    secret = secrets.token_urlsafe(32)
    issuer = TokenIssuer(secret)
    results: dict[str, LoadResult] = {}
    for target in targets(secret):
        if args.only and target.name != args.only:
            continue
        print(f"bench: measuring {target.name} ...", file=sys.stderr, flush=True)
        results[target.name] = await measure(target, args, issuer)
    if args.only:
        result = results[args.only]
        only = {"benchmark": "signaling", "clients": args.clients, "loadgen": args.loadgen}
        figures = {args.only: result.figures(), "cpu_share": result.cpu_shares(), "errors": result.errors}
        print(json.dumps({**only, **figures}), flush=True)
        return 0
    print(json.dumps(report(results, args)), flush=True)
    return 0


def run(coroutine: Callable[[], Awaitable[int]]) -> int:
    # More sockets than the default soft limit of 1024 once --clients goes past ~500.
    with contextlib.suppress(ValueError, OSError):
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

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
