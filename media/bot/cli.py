"""`roomwire bot`: run one or more bots from the command line.

    roomwire bot --url http://localhost:8080 --room demo --dev --pattern
    roomwire bot --url URL --room demo --token T --record ./recordings --duration 30
    roomwire bot --url URL --room load --dev --count 20 --pattern --size 320x240 --fps 15

Each line it prints starts with the bot's identity. Exit status: 0 when it ran to the end,
1 when a bot could not join or lost the room (bad URL, refused token, no media), 2 for bad
arguments. This module only reads the arguments: every `roomwire` command loads it (its
entry point), and running bots (`runner.py`) needs aiortc and PyAV.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .dev_token import split_url
from .errors import BotError


def size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    from roomwire.media.sources import check_pattern_size

    try:
        check_pattern_size(width, height)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return width, height


def server_url(text: str) -> str:
    try:
        split_url(text)
    except BotError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}, e.g. http://localhost:8080") from None
    return text


def register(subparsers: Any) -> None:
    """Add `bot` to the `roomwire` command (called through the `roomwire.commands` entry point)."""
    p = subparsers.add_parser(
        "bot",
        help="run headless bot participants",
        description="Join a room with one or more bots that publish, record or echo media.",
    )
    p.add_argument(
        "--url",
        required=True,
        action="append",
        type=server_url,
        help="the roomwire server, e.g. http://localhost:8080; repeat it for the nodes of a cluster "
        "(a bot moves to the next when its node cannot be reached)",
    )
    p.add_argument("--room", required=True)
    auth = p.add_mutually_exclusive_group(required=True)
    auth.add_argument("--token", help="an access token for ROOM")
    auth.add_argument("--dev", action="store_true", help="get a token from a dev-mode server")
    p.add_argument("--name", default="bot", help="display name (with --count, a number is appended)")
    media = p.add_mutually_exclusive_group()
    media.add_argument("--pattern", action="store_true", help="publish a test pattern video and a tone")
    media.add_argument("--play", metavar="FILE", help="publish a media file (looped)")
    media.add_argument("--silence", action="store_true", help="publish a silent audio track")
    p.add_argument("--size", type=size, default=(640, 480), help="pattern size WIDTHxHEIGHT (640x480)")
    p.add_argument("--fps", type=float, default=30, help="pattern frame rate (30)")
    sink = p.add_mutually_exclusive_group()
    sink.add_argument("--record", metavar="DIR", help="record each participant to DIR/<identity>.<format>")
    sink.add_argument("--echo", action="store_true", help="publish back the camera and microphone of a participant")
    p.add_argument("--format", choices=["webm", "mp4"], default="webm", help="recording format (webm)")
    p.add_argument("--duration", type=float, metavar="S", help="leave after S seconds (default: run until Ctrl+C)")
    p.add_argument("--count", type=int, default=1, metavar="N", help="run N bots in this process")
    p.add_argument(
        "--stats", type=float, default=2.0, metavar="S", help="print frames/s every S seconds (0: never; %(default)g)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    problem = check(args)
    if problem:
        print(f"roomwire bot: {problem}", file=sys.stderr)
        return 2
    from .runner import run_bots  # aiortc and PyAV: only when bots run, not for every `roomwire` command

    try:
        return asyncio.run(run_bots(args))
    except KeyboardInterrupt:
        return 0


def check(args: argparse.Namespace) -> str | None:
    if args.count < 1:
        return "--count must be at least 1"
    if args.count > 1 and args.token:
        return "--count > 1 needs --dev: every bot needs its own identity, and a token carries one"
    if args.duration is not None and args.duration <= 0:
        return "--duration must be positive"
    if args.fps <= 0:
        return "--fps must be positive"
    return None
