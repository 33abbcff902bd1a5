"""`SFU`: roomwire's media backend. Forwards audio, video and data between the participants of
a room through aiortc peer connections, RTP packet by RTP packet, without decoding or encoding
anything.

Wire details (`sfu.publish`, `sfu.subscribe`, `sfu.offer`, `sfu.candidate`, `sfu.unpublish`)
are in docs/sfu.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCIceCandidate
from prometheus_client import CollectorRegistry
from roomwire.signaling.media_backend import MediaSession, MediaSignaling
from roomwire.signaling.protocol import Grants, ProtocolError, bad_request

from . import aiortc_internals
from .data_relay import DataRelay
from .media_metrics import MediaCollector, MediaGauges, MediaStats
from .publish_offer import parse_publish
from .publisher import PublishedTrack, Publisher
from .subscriber import Subscriber

logger = logging.getLogger(__name__)

DEFAULT_OFFER_TIMEOUT = 10.0


@dataclass
class _Room:
    name: str
    publishers: dict[str, Publisher] = field(default_factory=dict)
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    relay: DataRelay = field(default_factory=DataRelay)
    announced: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # last set_tracks

    def tracks_for(self, identity: str) -> list[PublishedTrack]:
        """Every track `identity` may receive: all but its own."""
        return [t for who, pub in self.publishers.items() if who != identity for t in pub.tracks]

    @property
    def empty(self) -> bool:
        return not self.publishers and not self.subscribers


class SFU:
    """The `MediaBackend` that relays media through the server.

    `ice_servers`: ICE servers for the SFU's own peer connections (`[{urls, username?,
    credential?}]`, as handed to clients). `offer_timeout`: seconds a participant has to answer
    an `sfu.offer` before its subscriber connection is dropped.
    """

    def __init__(
        self, ice_servers: list[dict[str, Any]] | None = None, *, offer_timeout: float = DEFAULT_OFFER_TIMEOUT
    ) -> None:
        self.ice_servers = list(ice_servers or [])
        self.offer_timeout = offer_timeout
        self._signaling: MediaSignaling | None = None
        self._rooms: dict[str, _Room] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = MediaStats()
        self._collector = MediaCollector(self.stats, self.gauges)
        self._registry: CollectorRegistry | None = None

    # -- MediaBackend ----------------------------------------------------------------------

    async def start(self, signaling: MediaSignaling) -> None:
        aiortc_internals.verify()
        self._signaling = signaling
        self._registry = signaling.metrics_registry
        self._registry.register(self._collector)

    async def handle(self, session: MediaSession, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._signaling is None:
            raise ProtocolError("internal", "the SFU is not started")
        if not isinstance(payload, dict):
            raise bad_request(f"sfu.{op} takes an object")
        if op == "publish":
            return await self._publish(session, payload)
        if op == "subscribe":
            return self._subscribe(session)
        if op == "candidate":
            return await self._candidate(session, payload)
        if op == "unpublish":
            return await self._unpublish(session, payload)
        raise ProtocolError("not_found", f"unknown SFU operation sfu.{op}")

    async def participant_left(self, room: str, identity: str) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        publisher = state.publishers.pop(identity, None)
        subscriber = state.subscribers.pop(identity, None)
        state.announced.pop(identity, None)
        if subscriber is not None:
            await subscriber.close()
        if publisher is not None:
            had_tracks = bool(publisher.tracks)
            await publisher.close()
            if had_tracks:
                self._invalidate_others(state, identity)
        self._forget_if_empty(state)

    async def close(self) -> None:
        # let pending reactions (closing a failed connection, announcing tracks) finish first
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for state in list(self._rooms.values()):
            for identity in list(state.publishers) + list(state.subscribers):
                await self.participant_left(state.name, identity)
        self._rooms.clear()
        if self._registry is not None:
            self._registry.unregister(self._collector)
            self._registry = None

    # -- introspection (tests, metrics) ------------------------------------------------------

    def tracks(self, room: str) -> list[PublishedTrack]:
        state = self._rooms.get(room)
        return [t for pub in state.publishers.values() for t in pub.tracks] if state else []

    def subscriber(self, room: str, identity: str) -> Subscriber | None:
        state = self._rooms.get(room)
        return state.subscribers.get(identity) if state else None

    def publisher(self, room: str, identity: str) -> Publisher | None:
        state = self._rooms.get(room)
        return state.publishers.get(identity) if state else None

    def gauges(self) -> MediaGauges:
        published: Counter[str] = Counter()
        subscriptions: Counter[str] = Counter()
        paused = 0
        for state in self._rooms.values():
            for publisher in state.publishers.values():
                published.update(track.kind for track in publisher.tracks)
            for subscriber in state.subscribers.values():
                for stream in subscriber.media.streams:
                    subscriptions[stream.kind] += 1
                    paused += stream.paused
        return MediaGauges(published, subscriptions, paused)

    @property
    def peer_connections(self) -> int:
        return sum((p.pc is not None) for s in self._rooms.values() for p in s.publishers.values()) + sum(
            len(s.subscribers) for s in self._rooms.values()
        )

    # -- operations --------------------------------------------------------------------------

    def _room(self, name: str) -> _Room:
        state = self._rooms.get(name)
        if state is None:
            state = self._rooms[name] = _Room(name)
        return state

    def _publisher(self, state: _Room, identity: str, grants: Grants) -> Publisher:
        publisher = state.publishers.get(identity)
        if publisher is None:
            publisher = state.publishers[identity] = Publisher(
                identity,
                self.ice_servers,
                state.relay,
                relay_data=grants.data,
                stats=self.stats,
                on_tracks_changed=lambda: self._spawn(self._tracks_changed(state, identity)),
                on_failed=lambda: self._spawn(self._publisher_failed(state, identity)),
            )
        return publisher

    async def _publish(self, session: MediaSession, payload: dict[str, Any]) -> dict[str, Any]:
        offer = parse_publish(payload, session.grants)
        state = self._room(session.room)
        publisher = self._publisher(state, session.identity, session.grants)
        if publisher.lock.locked():
            raise ProtocolError("conflict", "a publish negotiation is already in progress")
        async with publisher.lock:
            try:
                answer, changed = await publisher.negotiate(offer)
            except ProtocolError:
                if publisher.closed and state.publishers.get(session.identity) is publisher:
                    del state.publishers[session.identity]
                    self._forget_if_empty(state)
                raise
        if state.publishers.get(session.identity) is not publisher:
            # the participant left while we negotiated
            await publisher.close()
            raise ProtocolError("not_found", "the participant left")
        if changed:
            await self._tracks_changed(state, session.identity)
        # the sids let the client unpublish (sfu.unpublish) without reading presence
        tracks = [{"mid": t.mid, **t.info()} for t in publisher.tracks]
        return {"sdp": answer, "tracks": tracks}

    def _subscribe(self, session: MediaSession) -> dict[str, Any]:
        grants = session.grants
        if not grants.subscribe and not grants.data:
            raise ProtocolError("forbidden", "this token lacks the `subscribe` and `data` grants")
        state = self._room(session.room)
        existing = state.subscribers.get(session.identity)
        if existing is not None:
            existing.invalidate()
            return {}
        assert self._signaling is not None
        identity = session.identity

        def failed(reason: str) -> None:
            self._spawn(self._subscriber_failed(state, identity, subscriber, reason))

        subscriber = Subscriber(
            session.room,
            identity,
            receive_media=grants.subscribe,
            tracks=lambda: state.tracks_for(identity),
            relay=state.relay if grants.data else None,
            signaling=self._signaling,
            ice_servers=self.ice_servers,
            offer_timeout=self.offer_timeout,
            stats=self.stats,
            on_failed=failed,
        )
        state.subscribers[identity] = subscriber
        return {}

    async def _candidate(self, session: MediaSession, payload: dict[str, Any]) -> dict[str, Any]:
        which = payload.get("pc")
        if which not in ("publisher", "subscriber"):
            raise bad_request('`pc` must be "publisher" or "subscriber"')
        candidate = _parse_candidate(payload.get("candidate"))
        state = self._room(session.room)
        if which == "publisher":
            if not session.grants.publish and not session.grants.data:
                raise ProtocolError("forbidden", "this token may not publish")
            await self._publisher(state, session.identity, session.grants).add_candidate(candidate)
        else:
            subscriber = state.subscribers.get(session.identity)
            if subscriber is None:
                self._forget_if_empty(state)
                raise ProtocolError("not_found", "no subscriber connection: send sfu.subscribe first")
            await subscriber.add_candidate(candidate)
        return {}

    async def _unpublish(self, session: MediaSession, payload: dict[str, Any]) -> dict[str, Any]:
        sid = payload.get("sid")
        if not isinstance(sid, str):
            raise bad_request("`sid` must be a track sid")
        state = self._rooms.get(session.room)
        publisher = state.publishers.get(session.identity) if state else None
        if state is None or publisher is None or not publisher.unpublish(sid):
            raise ProtocolError("not_found", f"no track {sid!r} published by you")
        await self._tracks_changed(state, session.identity)
        return {}

    # -- reactions ---------------------------------------------------------------------------

    async def _tracks_changed(self, state: _Room, identity: str) -> None:
        publisher = state.publishers.get(identity)
        infos = publisher.track_infos() if publisher is not None else []
        assert self._signaling is not None
        if state.announced.get(identity, []) != infos:
            state.announced[identity] = infos
            try:
                await self._signaling.set_tracks(state.name, identity, infos)
            except (LookupError, ProtocolError) as exc:  # it left meanwhile: its leave says it all
                logger.debug("set_tracks(%s/%s) skipped: %s", state.name, identity, exc)
        self._invalidate_others(state, identity)

    def _invalidate_others(self, state: _Room, identity: str) -> None:
        for who, subscriber in state.subscribers.items():
            if who != identity:
                subscriber.invalidate()

    async def _publisher_failed(self, state: _Room, identity: str) -> None:
        publisher = state.publishers.pop(identity, None)
        if publisher is None:
            return
        logger.info("publisher %s/%s: connection failed; its tracks are removed", state.name, identity)
        await publisher.close()
        await self._tracks_changed(state, identity)
        self._forget_if_empty(state)

    async def _subscriber_failed(self, state: _Room, identity: str, subscriber: Subscriber, reason: str) -> None:
        if state.subscribers.get(identity) is subscriber:
            del state.subscribers[identity]
        logger.info("subscriber %s/%s dropped: %s", state.name, identity, reason)
        await subscriber.close()
        self._forget_if_empty(state)

    def _forget_if_empty(self, state: _Room) -> None:
        if state.empty and self._rooms.get(state.name) is state:
            del self._rooms[state.name]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _parse_candidate(raw: Any) -> RTCIceCandidate | None:
    """`{candidate, sdpMid, sdpMLineIndex}`; null (or an empty candidate) ends the candidates."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("`candidate` must be {candidate, sdpMid, sdpMLineIndex} or null")
    line = raw.get("candidate")
    mid = raw.get("sdpMid")
    index = raw.get("sdpMLineIndex")
    if not isinstance(line, str) or len(line) > 1024:
        raise bad_request("`candidate.candidate` must be a candidate line")
    if line == "":
        return None
    if mid is not None and not isinstance(mid, str):
        raise bad_request("`sdpMid` must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise bad_request("`sdpMLineIndex` must be a non-negative integer")
    if mid is None and index is None:
        raise bad_request("a candidate needs `sdpMid` or `sdpMLineIndex`")
    try:
        candidate = aiortc_internals.parse_candidate(line)
    except Exception:
        raise bad_request("`candidate.candidate` is not a valid ICE candidate") from None
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate
