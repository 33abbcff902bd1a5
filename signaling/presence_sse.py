"""Presence over Server-Sent Events: `GET {prefix}/rooms/{room}/presence/sse`.

The stream opens with `event: snapshot` (or, on a reconnect whose `Last-Event-ID` the log can
still serve, with the missed `presence` events), then sends one `event: presence` per log event.
Every event's `id:` is `EPOCH:OFFSET`, which is exactly what EventSource sends back as
`Last-Event-ID` when it reconnects by itself, so a dropped stream resumes without a gap.
A `snapshot` may come again at any time (the log restarted or the position was lost); it
replaces everything the client knew.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from .backend import Recovery, StateBackend
from .http_auth import protocol_errors, room_access
from .presence_watchers import WatcherPresence, presence_flag
from .protocol import EPOCH_PATTERN, ProtocolError
from .tokens import TokenIssuer

log = logging.getLogger("roomwire.presence.sse")

# A comment line at least this often keeps proxies from closing an idle stream (docs/protocol.md:
# at least every 15 s). Read per stream, so a test may shorten it.
HEARTBEAT_SECONDS = 10.0
# Sent as `retry:` first thing: EventSource waits this long before reconnecting by itself.
RECONNECT_MS = 1000
# Without `handler_cancellation` aiohttp does not tell a handler that its client went away; a
# waiting stream looks at its transport at least this often, so a closed stream is noticed
# (and a present watcher leaves) within seconds even in such an embedding app.
LIVENESS_SLICE = 2.5

# While the shared state (Redis) is unreachable, a stream asks again this often.
UNAVAILABLE_RETRY = 1.0

EVENT_ID = re.compile(r"([A-Za-z0-9_-]{1,32}):([0-9]{1,18})")


def parse_event_id(raw: str | None) -> tuple[str | None, int | None]:
    """`EPOCH:OFFSET` from `Last-Event-ID`; anything else means "no position" (a snapshot).

    EventSource only ever sends back an id we gave it, and answering an error would stop it
    from reconnecting for good, so a malformed id is not an error here.
    """
    match = EVENT_ID.fullmatch(raw or "")
    if match is None or EPOCH_PATTERN.fullmatch(match.group(1)) is None:
        return None, None
    return match.group(1), int(match.group(2))


@dataclass(eq=False)
class PresenceStream:
    """One open SSE stream; `close()` ends it from the server side."""

    room: str
    identity: str
    closing: bool = False
    reason: str | None = None
    position: tuple[str | None, int | None] = (None, None)  # the last event id sent
    _cutoff: asyncio.Timeout | None = None

    def close(self, reason: str | None = None) -> None:
        if self.closing:
            return
        self.closing = True
        self.reason = reason
        if self._cutoff is not None:
            # Expire the stream's timeout scope now: the pump is cancelled wherever it waits.
            self._cutoff.reschedule(asyncio.get_running_loop().time())


class PresenceSSE:
    def __init__(self, issuer: TokenIssuer, backend: StateBackend, watchers: WatcherPresence) -> None:
        self.issuer = issuer
        self.backend = backend
        self.watchers = watchers
        self.streams: set[PresenceStream] = set()

    def close_streams(self, room: str | None = None, reason: str | None = None) -> int:
        """End the open streams of a room (or all); EventSource clients reconnect and resume."""
        chosen = [s for s in self.streams if room is None or s.room == room]
        for stream in chosen:
            stream.close(reason)
        return len(chosen)

    @protocol_errors
    async def handle(self, request: web.Request) -> web.StreamResponse:
        room, claims = room_access(request, self.issuer)
        present = presence_flag(request.query)
        # `lastEventId` in the query: what EventSource polyfills send when they cannot set headers.
        epoch, offset = parse_event_id(request.headers.get("Last-Event-ID") or request.query.get("lastEventId"))
        lease = await self.watchers.hold(room, claims, "sse") if present else None
        stream = PresenceStream(room, claims.identity)
        self.streams.add(stream)
        if lease is not None:
            lease.on_lost.add(stream.close)
        try:
            return await self._stream(request, stream, epoch, offset)
        finally:
            self.streams.discard(stream)
            if lease is not None:
                lease.on_lost.discard(stream.close)
                self.watchers.release(lease)

    async def _stream(
        self, request: web.Request, stream: PresenceStream, epoch: str | None, offset: int | None
    ) -> web.StreamResponse:
        # Never raises once the headers are out: there is no error response left to send.
        async with sse_response(request, ping_interval=HEARTBEAT_SECONDS) as sse:
            try:
                await sse.write(f"retry: {RECONNECT_MS}\r\n\r\n".encode())
                try:
                    async with asyncio.timeout(None) as stream._cutoff:
                        if not stream.closing:
                            await self._pump(request, sse, stream, epoch, offset)
                except TimeoutError:
                    if not stream.closing:
                        raise  # a write timed out: a stalled client
                finally:
                    stream._cutoff = None
                if stream.reason is not None and request.transport is not None:
                    await self._goodbye(sse, stream)
            except (ConnectionError, RuntimeError, TimeoutError):
                pass  # the client went away or stalled mid-write
            except Exception:
                log.exception("presence stream of room %s failed", stream.room)
        return sse

    async def _pump(
        self,
        request: web.Request,
        sse: EventSourceResponse,
        stream: PresenceStream,
        epoch: str | None,
        offset: int | None,
    ) -> None:
        wait = 0.0  # the first answer at once: a snapshot or what was missed
        while request.transport is not None and not stream.closing:
            try:
                recovery = await self.backend.recover(stream.room, epoch, offset, wait=wait)
            except ProtocolError as exc:
                if exc.code != "unavailable":
                    raise
                # the shared state is down: the stream stays (its pings go on) and catches up after
                await asyncio.sleep(UNAVAILABLE_RETRY)
                continue
            await self._send(sse, stream, recovery)
            epoch, offset, wait = recovery.epoch, recovery.offset, LIVENESS_SLICE

    async def _send(self, sse: EventSourceResponse, stream: PresenceStream, recovery: Recovery) -> None:
        # The position moves after each event: a stream cut mid-batch never repeats an event.
        if recovery.is_snapshot:
            body = {"epoch": recovery.epoch, "offset": recovery.offset, "participants": recovery.participants}
            await sse.send(_json(body), id=f"{recovery.epoch}:{recovery.offset}", event="snapshot")
            stream.position = (recovery.epoch, recovery.offset)
            return
        for event in recovery.events or ():
            await sse.send(_json(event), id=f"{event['epoch']}:{event['offset']}", event="presence")
            stream.position = (event["epoch"], event["offset"])

    async def _goodbye(self, sse: EventSourceResponse, stream: PresenceStream) -> None:
        """Removed from the room: the events up to now (its own leave among them), then `kicked`."""
        try:
            async with asyncio.timeout(1):
                await self._send(sse, stream, await self.backend.recover(stream.room, *stream.position))
                await sse.send(_json({"reason": stream.reason}), event="kicked")
        except (TimeoutError, ConnectionError, RuntimeError):
            pass


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
