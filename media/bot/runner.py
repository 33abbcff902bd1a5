"""What `roomwire bot` does once its arguments are read: start the bots, print what happens to
them, supervise them until --duration or a signal, finish their recordings."""

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
from .dev_token import dev_token, first_reachable
from .errors import BotError
from .tracks import RemoteTrack


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
