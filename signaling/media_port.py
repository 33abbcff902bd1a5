"""`MediaPort`: the `MediaSignaling` the media backend talks back through (docs/sfu.md)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from .backend import StateBackend
from .courier import Courier
from .metrics import Metrics
from .protocol import ProtocolError, bad_request
from .rooms import RoomService, is_socket_owner


class MediaPort:
    """Offers to a participant's connection on whichever node holds it (the answer comes back in
    the ack) and track changes as presence `track` events."""

    def __init__(self, courier: Courier, backend: StateBackend, rooms: RoomService, metrics: Metrics) -> None:
        self.courier = courier
        self.backend = backend
        self.rooms = rooms
        self.metrics = metrics

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self.metrics.registry

    async def send_offer(
        self, room: str, identity: str, sdp: str, timeout: float, extra: dict[str, Any] | None = None
    ) -> str:
        member = await self.backend.membership(room, identity)
        if member is None or not is_socket_owner(member.owner):
            raise ProtocolError("not_found", f"{identity!r} is not connected to room {room!r}")
        answer = await self.courier.call(member, "sfu.offer", {**(extra or {}), "sdp": sdp}, timeout)
        self.metrics.events_out.labels("sfu.offer").inc()
        if isinstance(answer, dict) and answer.get("ok") is False:
            error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
            raise ProtocolError("bad_request", f"the client refused the offer: {error.get('message')}")
        if not isinstance(answer, dict) or not isinstance(answer.get("sdp"), str):
            raise bad_request("the answer to sfu.offer must be {sdp: string}")
        return answer["sdp"]

    async def set_tracks(self, room: str, identity: str, tracks: list[dict[str, Any]]) -> None:
        await self.rooms.update(room, identity, None, {"tracks": tracks}, kind="track")
