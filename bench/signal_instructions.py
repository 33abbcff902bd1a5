"""Instructions the signaling server runs per inbound `signal` event, counted by callgrind.

    .venv/bin/python bench/signal_instructions.py [--round-trips 1000] [--before PYTHON]

CPU time on a shared virtual machine moves by 10-30 % from one run to the next, more than
most single changes to the signal path save; an instruction count does not. Each server
(`roomwire serve --dev --media none` of this checkout and, with --before, of that interpreter's
install) runs under `valgrind --tool=callgrind` with counting off; 20 pairs of python-socketio
clients join one room and relay offer/answer round trips (1 KB of SDP each way, pairs in turn,
each event acked); counting is on only for the measured round trips, after a warm-up. A round
trip is two inbound events (the offer and the answer), each relayed and acked.
Counts user-space instructions only: not the kernel's share (about 45 %, docs/benchmarks.md),
nor time spent waiting. Needs valgrind (`apt-get install -y valgrind`). About a minute per server.
Human-readable lines first; the JSON object is the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import socketio

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # as bench/signaling.py: the repository root, not bench/

from roomwire.signaling.tokens import TokenIssuer  # noqa: E402

from bench.serving import free_port, wait_serving  # noqa: E402

PAIRS = 20  # clients take turns: each stays far below the per-connection rate limit
WARM_UP = 50
SDP = {"sdp": "v=0 " + "x" * 996}


class Pair:
    def __init__(self, index: int) -> None:
        self.names = (f"offerer{index}", f"answerer{index}")
        self.clients = (socketio.AsyncClient(), socketio.AsyncClient())
        self.received: tuple[asyncio.Queue[object], asyncio.Queue[object]] = (asyncio.Queue(), asyncio.Queue())
        for client, inbox in zip(self.clients, self.received, strict=True):
            client.on("signal", inbox.put_nowait)

    async def join(self, url: str, issuer: TokenIssuer) -> None:
        for name, client in zip(self.names, self.clients, strict=True):
            token = issuer.mint(identity=name, room="bench")
            await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=60)
            ack = await client.call("join", {}, timeout=60)
            if not ack.get("ok"):
                raise RuntimeError(f"join refused: {ack}")

    async def round_trip(self) -> None:
        for sender, kind in ((0, "offer"), (1, "answer")):
            to = self.names[1 - sender]
            ack = await self.clients[sender].call("signal", {"to": to, "type": kind, "data": SDP}, timeout=60)
            if not ack.get("ok"):
                raise RuntimeError(f"signal refused: {ack}")
            await self.received[1 - sender].get()

    async def close(self) -> None:
        for client in self.clients:
            await client.disconnect()


async def count(python: str, round_trips: int) -> float:
    """Instructions per inbound signal event of the roomwire that `python` runs."""
    secret = "bench-" + "s" * 32
    port = free_port()
    with tempfile.TemporaryDirectory() as out:
        profile = Path(out) / "callgrind.out"
        server = await asyncio.create_subprocess_exec(
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={profile}",
            python, "-m", "roomwire.signaling.cli", "serve", "--dev", "--media", "none",
            "--port", str(port), "--secret", secret, "--log-level", "warning",
            cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        pairs = [Pair(i) for i in range(PAIRS)]
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_serving(f"{url}/healthz", lambda: server.returncode, timeout=120)
            issuer = TokenIssuer(secret)
            for pair in pairs:
                await pair.join(url, issuer)
            for n in range(WARM_UP):
                await pairs[n % PAIRS].round_trip()
            await toggle(server.pid, "on")
            for n in range(round_trips):
                await pairs[n % PAIRS].round_trip()
            await toggle(server.pid, "off")
        finally:
            for pair in pairs:
                with contextlib.suppress(Exception):
                    await pair.close()
            if server.returncode is None:
                server.terminate()
            await server.wait()
        return total_instructions(profile) / (2 * round_trips)


async def toggle(pid: int, state: str) -> None:
    control = await asyncio.create_subprocess_exec(
        "callgrind_control",
        "--instr=" + state,
        str(pid),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await control.wait() != 0:
        raise RuntimeError(f"callgrind_control --instr={state} failed")


def total_instructions(profile: Path) -> int:
    totals = [
        int(line.split()[1])
        for path in profile.parent.glob(profile.name + "*")
        for line in path.read_text().splitlines()
        if line.startswith(("summary:", "totals:"))
    ]
    if not totals:
        raise RuntimeError(f"callgrind wrote no totals to {profile}")
    return max(totals)


async def main(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench: valgrind is missing: apt-get install -y valgrind", file=sys.stderr)
        return 2
    servers = {"roomwire": sys.executable, **({"before": args.before} if args.before else {})}
    figures: dict[str, float] = {}
    for name, python in servers.items():
        print(f"bench: {args.round_trips} signal round trips against {name} under callgrind ...", file=sys.stderr)
        figures[name] = await count(python, args.round_trips)
        print(f"{name:>10}: {figures[name]:,.0f} instructions per inbound signal event")
    out: dict[str, object] = {"benchmark": "signal_instructions", "round_trips": args.round_trips}
    out["instructions_per_event"] = {name: round(value) for name, value in figures.items()}
    if "before" in figures:
        out["ratio_roomwire_over_before"] = round(figures["roomwire"] / figures["before"], 3)
        print(f"     ratio: {out['ratio_roomwire_over_before']}")
    print(json.dumps(out), flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=1000, help="measured round trips (default 1000)")
    parser.add_argument("--before", metavar="PYTHON", help="also count the roomwire installed for this interpreter")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
