"""`roomwire bot`: run one or more bots from the command line.

    roomwire bot --url http://localhost:8080 --room demo --dev --pattern
    roomwire bot --url URL --room demo --token T --record ./recordings --duration 30
    roomwire bot --url URL --room load --dev --count 20 --pattern --size 320x240 --fps 15

Each line it prints starts with the bot's identity. Exit status: 0 when it ran to the end,
1 when a bot could not join or lost the room (bad URL, refused token, no media), 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from .client import Bot
from .dev_token import dev_token, first_reachable, split_url
from .errors import BotError
from .tracks import RemoteTrack


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


def say(label: str, text: str) -> None:
    print(f"{label}: {text}", flush=True)


@dataclass
class RunningBot:
    label: str
    bot: Bot
    counter: Any = None
    sink: Any = None
    tracks: list[RemoteTrack] = field(default_factory=list)


def make_sources(args: argparse.Namespace) -> tuple[list[Any], str]:
    """Fresh sources for one bot, and how to describe them."""
    if args.pattern:
        from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack

        width, height = args.size
        return [PatternVideoTrack(width, height, args.fps), ToneAudioTrack()], (
            f"a {width}x{height} test pattern at {args.fps:g} fps and a tone"
        )
    if args.play:
        from roomwire.media.file_source import FileSource

        source = FileSource(args.play)
        kinds = ", ".join(
            f"{t.kind} ({'passthrough ' + t.passthrough_mime_type if t.passthrough_mime_type else 'decoded'})"
            for t in source.tracks
        )
        return [source], f"{args.play}: {kinds}"
    if args.silence:
        from aiortc.mediastreams import AudioStreamTrack

        silence: MediaStreamTrack = AudioStreamTrack()
        return [silence], "silence"
    return [], ""


def watch(running: RunningBot) -> None:
    """Print what happens to one bot."""
    bot, label = running.bot, running.label

    def others() -> str:
        names = sorted(bot.participants)
        count = f"{len(names)} other{'' if len(names) == 1 else 's'} here"
        return count + (f": {', '.join(names)}" if names and len(names) <= 10 else "")

    say(label, f"joined room {bot.room} as {bot.identity}; {others()}")
    bot.on_join(lambda p: say(label, f"{p['identity']} joined ({p.get('transport')}); {others()}"))
    bot.on_leave(lambda p: say(label, f"{p['identity']} left; {others()}"))
    bot.on_disconnect(lambda b: say(label, f"lost the connection to {b.url}; reconnecting"))
    bot.on_reconnect(lambda b: say(label, f"reconnected to {b.url} (#{b.reconnects}); {others()}"))

    def on_track(track: RemoteTrack) -> None:
        running.tracks.append(track)
        say(label, f"track {track.identity}/{track.kind} ({track.source}, {track.sid})")

    bot.on_track(on_track)  # the tracks already here too


async def start_bot(args: argparse.Namespace, index: int) -> RunningBot:
    name = args.name if args.count == 1 else f"{args.name}-{index + 1}"
    token = args.token
    if args.dev:
        token, _ = await first_reachable(
            args.url,
            lambda url: dev_token(url, args.room, name),
            lambda exc: say("roomwire bot", f"{exc.message}; trying the next URL"),
        )
    needs_media = bool(args.pattern or args.play or args.silence or args.record or args.echo)
    sources, description = make_sources(args)
    bot = Bot.connect(args.url, token)
    await bot.start()
    running = RunningBot(bot.identity, bot)
    try:
        if bot.room != args.room:
            raise BotError("forbidden", f"the token is for room {bot.room!r}, not {args.room!r}")
        watch(running)
        if needs_media and not bot.media_available:
            raise BotError("not_found", f"{bot.url} relays no media (it runs without an SFU)")
        if args.record:
            from roomwire.media.bot.sinks import Recorder

            running.sink = Recorder(args.record, args.format).attach(bot)
        elif args.echo:
            from roomwire.media.bot.sinks import Echo

            running.sink = Echo(bot)
        if bot.media_available:
            from roomwire.media.bot.sinks import FrameCounter

            running.counter = FrameCounter(consume=running.sink is None).attach(bot)
        if sources:
            await bot.publish(*sources)
            say(running.label, f"publishing {description}")
    except BaseException:
        await bot.close()
        raise
    return running


async def run_bots(args: argparse.Namespace) -> int:
    # Ctrl+C and SIGTERM end the run like --duration does: recordings are finished, bots leave
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        started = await asyncio.gather(*(start_bot(args, i) for i in range(args.count)), return_exceptions=True)
    except (OSError, ValueError) as exc:
        print(f"roomwire bot: {exc}", file=sys.stderr)
        return 1
    bots = [b for b in started if isinstance(b, RunningBot)]
    failures = [b for b in started if not isinstance(b, RunningBot)]
    if failures:
        for running in bots:
            await running.bot.close()
        print(f"roomwire bot: {describe(failures[0])}", file=sys.stderr)
        return 1
    status = 0
    try:
        status = await supervise(args, bots, stop)
    finally:
        for running in bots:
            status = max(status, await finish(args, running))
    return status


def describe(error: BaseException) -> str:
    if isinstance(error, BotError) and error.code in ("unauthorized", "forbidden"):
        return f"the server refused the token ({error.code}): {error.message}"
    if isinstance(error, BotError):
        return error.message
    if isinstance(error, FileNotFoundError):
        return f"no such file: {error.filename}"
    return f"{type(error).__name__}: {error}"


async def supervise(args: argparse.Namespace, bots: list[RunningBot], stop: asyncio.Event) -> int:
    """Run until --duration is over or `stop`, printing rates; 1 if a bot was lost."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.duration if args.duration else None
    lost = [asyncio.ensure_future(running.bot.closed.wait()) for running in bots]
    stopping = asyncio.ensure_future(stop.wait())
    interval = args.stats if args.stats > 0 else 3600.0
    try:
        while True:
            timeout = interval if deadline is None else min(interval, deadline - loop.time())
            done, _ = await asyncio.wait(
                [*lost, stopping], timeout=max(timeout, 0), return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                return 0
            if done:
                for running in bots:
                    if running.bot.closed.is_set():
                        reason = running.bot.kicked or running.bot.error or "the connection ended"
                        print(f"roomwire bot: {running.label} lost the room: {reason}", file=sys.stderr)
                return 1
            if args.stats > 0:
                print_rates(bots)
            if deadline is not None and loop.time() >= deadline:
                return 0
    finally:
        for waiter in [*lost, stopping]:
            waiter.cancel()


def print_rates(bots: list[RunningBot]) -> None:
    for running in bots:
        if running.counter is None:
            continue
        for track, rate in running.counter.rates().items():
            say(running.label, f"{track.identity}/{track.kind} {rate:.1f} frames/s")


async def finish(args: argparse.Namespace, running: RunningBot) -> int:
    status = 0
    if running.counter is not None:
        await running.counter.close()
    if args.record and running.sink is not None:
        files = await running.sink.close()
        for path in files:
            say(running.label, f"recorded {path}")
        if not files:
            print(f"roomwire bot: {running.label} recorded nothing: no media arrived", file=sys.stderr)
            status = 1
    with contextlib.suppress(Exception):
        await running.bot.close()
    say(running.label, "left")
    return status
