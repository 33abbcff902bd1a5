"""`Bot`: a headless participant that speaks the wire protocol like any client.

    async with Bot.connect(url, token) as bot:
        await bot.publish(PatternVideoTrack(), ToneAudioTrack())
        bot.on_message(lambda message: print(message.sender, message.data))
        async for track in bot.tracks():
            ...

It joins over Socket.IO (as `agent: "bot"`, so presence shows `transport: "bot"`), keeps the
room's participants from the join snapshot and `presence` events, and talks to the SFU through
a `PeerLink`. When signaling drops it reconnects with exponential backoff, rejoins (the
snapshot diff becomes join/leave callbacks) and publishes its sources again. A refused token
or a kick ends it: `closed` is then set and `error` / `kicked` say why.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import socketio
from aiortc.mediastreams import MediaStreamTrack
from roomwire.signaling.protocol import REJOIN

from .dev_token import first_reachable, split_url
from .errors import BotError
from .peers import DEFAULT_SOURCE, PeerLink, Publication
from .roster import Roster
from .tracks import RemoteTrack

log = logging.getLogger("roomwire.bot")

CALL_TIMEOUT = 15.0
FATAL_CODES = ("unauthorized", "forbidden")


@dataclass(frozen=True)
class Message:
    """Room data: `via` "socket" (a `message` event, with its `id`) or "data" (the SFU data channel)."""

    sender: str
    data: Any
    via: str
    id: str | None = None


class Bot:
    """A room participant without a browser. Use `async with Bot.connect(url, token) as bot`."""

    def __init__(
        self,
        url: str | Sequence[str],
        token: str,
        *,
        subscribe: bool = True,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.25, 8.0),
    ) -> None:
        # several URLs: the nodes of a cluster; one that cannot be reached is left for the next
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise BotError("bad_request", "no server URL given")
        for each in self.urls:
            split_url(each)  # BotError now for a URL that is not one
        self._at = 0  # the URL connected to (or tried next)
        self._token = token
        self._subscribe = subscribe
        self._reconnect = reconnect
        self._backoff = backoff
        self.roster = Roster()
        self.media_available = False
        self.reconnects = 0
        self.media_restarts = 0  # `sfu.restart`s handled: the room's media moved to another node
        self._ice_servers: list[dict[str, Any]] = []
        self.error: BotError | None = None
        self.kicked: str | None = None
        self.closed = asyncio.Event()
        self._sio: socketio.AsyncClient | None = None
        self._link: PeerLink | None = None
        self._publications: list[Publication] = []
        self._wants_data = False
        self._dropped = asyncio.Event()
        self._changed = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._callbacks: dict[str, list[Callable[..., Any]]] = {
            name: [] for name in ("track", "message", "join", "leave", "presence", "disconnect", "reconnect")
        }
        self._track_queues: set[asyncio.Queue[RemoteTrack | None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def identity(self) -> str:
        return self.roster.identity

    @property
    def room(self) -> str:
        return self.roster.room

    @property
    def me(self) -> dict[str, Any]:
        """The bot's own participant object (`transport: "bot"`)."""
        return self.roster.me

    @property
    def participants(self) -> dict[str, dict[str, Any]]:
        """Everyone else in the room, by identity."""
        return self.roster.others

    @property
    def url(self) -> str:
        """The server URL the bot is connected to (or tries next)."""
        return self.urls[self._at]

    @classmethod
    def connect(cls, url: str | Sequence[str], token: str, **options: Any) -> Bot:
        """A bot to use as `async with Bot.connect(url, token) as bot:` (or `await bot.start()`)."""
        return cls(url, token, **options)

    def __await__(self) -> Any:
        """`bot = await Bot.connect(url, token)` starts it too (then `await bot.close()`)."""
        return self._started().__await__()

    async def _started(self) -> Bot:
        await self.start()
        return self

    async def __aenter__(self) -> Bot:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and join (the first URL that can be reached); raises BotError (refused token,
        no server reachable...)."""

        async def attempt(at: int) -> None:
            self._at = at
            try:
                await self._connect_once()
            except BaseException:
                await self._teardown()
                raise

        await first_reachable(range(len(self.urls)), attempt, lambda e: log.info("%s; trying the next URL", e.message))
        self._supervisor = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        self._reconnect = False
        if self._supervisor is not None:
            self._supervisor.cancel()
        await self._teardown()
        for queue in self._track_queues:
            queue.put_nowait(None)
        for task in list(self._tasks):
            task.cancel()
        self.closed.set()

    async def _connect_once(self) -> None:
        # our own reconnect loop, not python-socketio's: it does not reconnect after a server-side
        # disconnect, and a reconnect must rejoin and republish anyway
        sio = self._sio = socketio.AsyncClient(reconnection=False)
        refusal: list[Any] = []
        sio.on("connect_error", lambda *data: refusal.extend(data))
        # a late event from a connection we already replaced must not trigger another reconnect
        sio.on("disconnect", lambda *reason: self._dropped.set() if self._sio is sio else None)
        sio.on("presence", self._on_presence)
        sio.on("message", self._on_socket_message)
        sio.on("kicked", self._on_kicked)
        sio.on("sfu.offer", self._on_sfu_offer)
        sio.on("sfu.restart", self._on_sfu_restart)
        try:
            origin, prefix = split_url(self.url)
            await sio.connect(
                origin,
                auth={"token": self._token, "agent": "bot"},
                socketio_path=f"{prefix}/socket.io",
                transports=["websocket"],
                wait_timeout=CALL_TIMEOUT,
            )
        except socketio.exceptions.ConnectionError as exc:
            # the refusal arrives as {message, data: {code, message}}
            error = refusal[0] if refusal and isinstance(refusal[0], dict) else {}
            error = error.get("data") if isinstance(error.get("data"), dict) else error
            if "code" in error:
                raise BotError(error["code"], f"the server refused the token: {error.get('message')}") from None
            raise BotError("unreachable", f"cannot reach {self.url}: {exc}") from None
        self._dropped.clear()
        ack = await self._call("join", {})
        self._apply_snapshot(ack)
        self._ice_servers = ack.get("iceServers") or []
        await self._start_media()

    async def _start_media(self) -> None:
        """Both peer connections with the room's media node: subscribe, publish, open data."""
        link = self._link = PeerLink(
            self._call, self._ice_servers, self._track_arrived, self._data_arrived, self._media_failed
        )
        if self._subscribe:
            try:
                self.media_available = await self._try_media(link.subscribe())
            except BotError as exc:
                if exc.code != "forbidden":
                    raise
                # a token without the subscribe and data grants: the bot can still publish
                log.info("not subscribing: %s", exc.message)
                self.media_available = True
        if self._publications:
            self.media_available = await self._try_media(link.publish(list(self._publications)))
        elif self._wants_data:
            self.media_available = await self._try_media(link.open_data())

    async def _try_media(self, step: Any) -> bool:
        """Run an SFU step; False when the server relays no media (it answers `not_found`)."""
        try:
            await step
        except BotError as exc:
            if exc.code != "not_found":
                raise
            return False
        return True

    async def _supervise(self) -> None:
        while True:
            await self._dropped.wait()
            await self._teardown()
            if not self._reconnect or self.kicked is not None:
                break
            self._fire("disconnect", self)
            if not await self._rejoin():
                break
            self.reconnects += 1
            self._fire("reconnect", self)
        self.closed.set()

    async def _rejoin(self) -> bool:
        """Reconnect with exponential backoff; False when the server refuses the token."""
        delay = self._backoff[0]
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            try:
                await self._connect_once()
                return True
            except BotError as exc:
                if exc.code in FATAL_CODES:
                    self.error = exc
                    await self._teardown()
                    return False
                log.info("reconnect to %s failed (%s); retrying", self.url, exc)
            except (OSError, TimeoutError, socketio.exceptions.SocketIOError) as exc:
                log.info("reconnect to %s failed (%s); retrying", self.url, exc)
            await self._teardown()
            self._at = (self._at + 1) % len(self.urls)  # a cluster's next node
            delay = min(delay * 2, self._backoff[1])

    async def _teardown(self) -> None:
        link, self._link = self._link, None
        sio, self._sio = self._sio, None
        if link is not None:
            await link.close()
        if sio is not None:
            await sio.disconnect()

    async def _call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        sio = self._sio
        if sio is None:
            raise BotError("unreachable", "not connected")
        try:
            ack = await sio.call(event, data, timeout=CALL_TIMEOUT)
        except socketio.exceptions.TimeoutError:
            raise BotError("unreachable", f"no answer to {event} within {CALL_TIMEOUT} s") from None
        except socketio.exceptions.BadNamespaceError:
            raise BotError("unreachable", "the connection dropped") from None
        if not isinstance(ack, dict) or ack.get("ok") is not True:
            error = ack.get("error") if isinstance(ack, dict) else None
            error = error if isinstance(error, dict) else {}
            raise BotError(str(error.get("code", "internal")), str(error.get("message", f"{event} failed")))
        return ack

    # -- publishing and data ---------------------------------------------------------------

    async def publish(self, *sources: Any, source: str | None = None) -> list[Publication]:
        """Publish tracks (MediaStreamTracks, or objects with `.tracks` such as a FileSource).

        `source` names them for others ("camera", "microphone", "screen"); by default video is
        "camera" and audio "microphone". They are published again after every reconnect.
        """
        tracks: list[MediaStreamTrack] = []
        for item in sources:
            tracks.extend(item.tracks if hasattr(item, "tracks") else [item])
        if not tracks:
            raise BotError("bad_request", "nothing to publish: no audio or video track")
        publications = [Publication(t, source or DEFAULT_SOURCE.get(t.kind, "camera")) for t in tracks]
        self._publications.extend(publications)
        link = self._link
        if link is not None:
            try:
                await link.publish(publications)
            except BotError as exc:
                if exc.code != "unreachable":  # refused (not a drop): never publish these again
                    self._publications = [p for p in self._publications if p not in publications]
                raise
            self.media_available = True
        return publications

    async def unpublish(self, *publications: Publication) -> None:
        """Stop publishing what `publish()` returned; others see the tracks go."""
        self._publications = [p for p in self._publications if p not in publications]
        if self._link is not None:
            await self._link.unpublish(list(publications))

    async def update(self, *, name: str | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Change the bot's display name and/or metadata; returns its participant object."""
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if metadata is not None:
            changes["metadata"] = metadata
        ack = await self._call("update", changes)
        self.roster.me = ack.get("self") or self.roster.me
        return self.roster.me

    async def send(self, data: Any, to: str | None = None) -> str:
        """Send a `message` (to everyone else, or only `to`); returns its id."""
        payload: dict[str, Any] = {"data": data}
        if to is not None:
            payload["to"] = to
        ack = await self._call("message", payload)
        return str(ack.get("id"))

    async def send_data(self, data: Any) -> None:
        """Send JSON over the SFU `data` channel; others receive `{from, data}`."""
        self._wants_data = True
        link = self._link
        if link is None:
            raise BotError("unreachable", "not connected")
        channel = await link.open_data()
        channel.send(json.dumps(data, separators=(",", ":")))

    # -- callbacks -------------------------------------------------------------------------

    def on_track(self, callback: Callable[[RemoteTrack], Any]) -> Callable[[RemoteTrack], Any]:
        """`callback(track)` for every subscribed track, those already here included (sync or
        async); usable as a decorator."""
        self._register("track", callback)
        for track in self.remote_tracks:
            self._fire_one(callback, track)
        return callback

    def on_message(self, callback: Callable[[Message], Any]) -> Callable[[Message], Any]:
        return self._register("message", callback)

    def on_join(self, callback: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        return self._register("join", callback)

    def on_leave(self, callback: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        return self._register("leave", callback)

    def on_presence(self, callback: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        """Every raw presence event `{type, participant, epoch, offset, ts}`."""
        return self._register("presence", callback)

    def on_disconnect(self, callback: Callable[[Bot], Any]) -> Callable[[Bot], Any]:
        """The connection dropped and the bot is reconnecting (`on_reconnect` when it is back)."""
        return self._register("disconnect", callback)

    def on_reconnect(self, callback: Callable[[Bot], Any]) -> Callable[[Bot], Any]:
        return self._register("reconnect", callback)

    def _register(self, name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        self._callbacks[name].append(callback)
        return callback

    def _fire(self, name: str, *args: Any) -> None:
        self._changed.set()
        for callback in self._callbacks[name]:
            self._fire_one(callback, *args)

    def _fire_one(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            result = callback(*args)
        except Exception:
            log.exception("a bot callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bot callback failed", exc_info=task.exception())

    @property
    def remote_tracks(self) -> list[RemoteTrack]:
        link = self._link
        return [t for t in link.remote.values() if not t.ended] if link is not None else []

    async def tracks(self) -> AsyncIterator[RemoteTrack]:
        """Every subscribed track: those already here, then each new one until the bot closes."""
        queue: asyncio.Queue[RemoteTrack | None] = asyncio.Queue()
        for track in self.remote_tracks:
            queue.put_nowait(track)
        self._track_queues.add(queue)
        try:
            while (track := await queue.get()) is not None:
                yield track
        finally:
            self._track_queues.discard(queue)

    async def wait_until(self, predicate: Callable[[Bot], bool], timeout: float | None = None) -> None:
        """Wait until `predicate(bot)` holds (checked after every presence, track or message)."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    # -- what the server sends -------------------------------------------------------------

    def _apply_snapshot(self, ack: dict[str, Any]) -> None:
        joined, left = self.roster.apply_snapshot(ack)
        for participant in left:
            self._fire("leave", participant)
        for participant in joined:
            self._fire("join", participant)
        self._changed.set()

    async def _on_presence(self, event: Any) -> None:
        change = self.roster.apply_event(event)
        if change == "resync":
            log.info("%s: the room's presence log restarted; rejoining for a fresh snapshot", self.identity)
            self._dropped.set()
            return
        if change == "stale":
            return
        if change is not None:
            self._fire(change, event["participant"])
        self._fire("presence", event)

    async def _on_socket_message(self, message: Any) -> None:
        if isinstance(message, dict):
            self._fire("message", Message(str(message.get("from")), message.get("data"), "socket", message.get("id")))

    def _data_arrived(self, sender: str, data: Any) -> None:
        self._fire("message", Message(sender, data, "data"))

    async def _on_kicked(self, data: Any) -> None:
        reason = str(data.get("reason")) if isinstance(data, dict) else "kicked"
        if reason != REJOIN:  # "rejoin": the room lost track of us; the reconnect joins again
            self.kicked = reason

    async def _on_sfu_restart(self, data: Any) -> None:
        """The room's media moved to another node: new peer connections, the same publications."""
        if self._link is None or self._dropped.is_set():
            return  # a reconnect is under way: it starts the media again anyway
        link, self._link = self._link, None
        log.info("%s: the room's media moved; publishing and subscribing again", self.identity)
        self.media_restarts += 1
        await link.close()
        try:
            await self._start_media()
        except BotError as exc:
            self._media_failed(f"restarting media failed: {exc.message}")

    async def _on_sfu_offer(self, data: Any) -> dict[str, Any]:
        link = self._link
        if link is None:
            return {"ok": False, "error": {"code": "conflict", "message": "the bot is reconnecting"}}
        return await link.answer(data)

    def _media_failed(self, reason: str) -> None:
        """A peer connection failed or the SFU dropped it: start over, as after a signaling drop."""
        log.warning("%s: %s; reconnecting", self.identity, reason)
        self._dropped.set()

    def _track_arrived(self, track: RemoteTrack) -> None:
        for queue in self._track_queues:
            queue.put_nowait(track)
        self._fire("track", track)
