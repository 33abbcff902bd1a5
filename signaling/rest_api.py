"""The REST API: health, metrics, tokens, rooms, kicks and server messages (docs/protocol.md)."""

from __future__ import annotations

import secrets

from aiohttp import web

from .backend import StateBackend
from .http_auth import (
    json_body,
    json_response,
    path_room,
    protocol_errors,
    require_admin,
    room_access,
)
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .protocol import (
    SERVER_IDENTITY,
    Grants,
    ProtocolError,
    bad_request,
    check_metadata,
    check_name,
    parse_message,
    valid_room,
)
from .rooms import RoomService
from .tokens import DEFAULT_TTL, TokenIssuer


class RestAPI:
    def __init__(
        self, issuer: TokenIssuer, rooms: RoomService, backend: StateBackend, metrics: Metrics, dev: bool
    ) -> None:
        self.issuer = issuer
        self.rooms = rooms
        self.backend = backend
        self.metrics = metrics
        self.dev = dev

    def routes(self, prefix: str) -> list[web.RouteDef]:
        routes = [
            web.get(f"{prefix}/healthz", self.healthz),
            web.get(f"{prefix}/metrics", self.render_metrics),
            web.post(f"{prefix}/api/tokens", self.create_token),
            web.get(f"{prefix}/api/rooms", self.list_rooms),
            web.get(f"{prefix}/api/rooms/{{room}}", self.get_room),
            web.delete(f"{prefix}/api/rooms/{{room}}/participants/{{identity}}", self.kick),
            web.post(f"{prefix}/api/rooms/{{room}}/messages", self.send_message),
        ]
        if self.dev:
            routes.append(web.post(f"{prefix}/api/dev/token", self.dev_token))
        return routes

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def render_metrics(self, request: web.Request) -> web.Response:
        rooms = await self.backend.rooms()
        self.metrics.rooms.set(len(rooms))
        self.metrics.participants.set(sum(room.participants for room in rooms))
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @protocol_errors
    async def create_token(self, request: web.Request) -> web.Response:
        require_admin(request, self.issuer)
        body = await json_body(request)
        try:
            grants = Grants.parse(body.get("grants"))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        token = self.issuer.mint(
            identity=body.get("identity"),  # type: ignore[arg-type]
            room=body.get("room"),
            name=check_name(body.get("name", "")),
            metadata=check_metadata(body.get("metadata", {})),
            grants=grants,
            ttl=body.get("ttl", DEFAULT_TTL),
        )
        return json_response({"token": token})

    @protocol_errors
    async def list_rooms(self, request: web.Request) -> web.Response:
        require_admin(request, self.issuer)
        rooms = await self.backend.rooms()
        return json_response(
            {
                "rooms": [
                    {"name": room.name, "participants": room.participants, "createdAt": room.created_at}
                    for room in sorted(rooms, key=lambda room: room.name)
                ]
            }
        )

    @protocol_errors
    async def get_room(self, request: web.Request) -> web.Response:
        room, _ = room_access(request, self.issuer)
        snapshot = await self.backend.snapshot(room)
        if snapshot is None or not snapshot.participants:
            raise ProtocolError("not_found", f"no room {room!r}")
        return json_response(
            {
                "name": room,
                "epoch": snapshot.epoch,
                "offset": snapshot.offset,
                "participants": snapshot.participants,
            }
        )

    @protocol_errors
    async def kick(self, request: web.Request) -> web.Response:
        require_admin(request, self.issuer)
        room = path_room(request)
        identity = request.match_info["identity"]
        if not await self.rooms.kick(room, identity):
            raise ProtocolError("not_found", f"{identity!r} is not in room {room!r}")
        return web.Response(status=204)

    @protocol_errors
    async def send_message(self, request: web.Request) -> web.Response:
        require_admin(request, self.issuer)
        room = path_room(request)
        data, to = parse_message(await json_body(request))
        snapshot = await self.backend.snapshot(room)
        if snapshot is None or not snapshot.participants:
            raise ProtocolError("not_found", f"no room {room!r}")
        message_id = await self.rooms.send(room, SERVER_IDENTITY, data, to, skip=None)
        return json_response({"id": message_id})

    @protocol_errors
    async def dev_token(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        room, name = body.get("room"), body.get("name", "")
        if not valid_room(room):
            raise bad_request("room names match ^[A-Za-z0-9_-]{1,64}$")
        name = check_name(name)
        identity = f"{slug(name)}-{secrets.token_hex(3)}"
        token = self.issuer.mint(identity=identity, room=room, name=name or identity)
        return json_response({"token": token, "identity": identity})


def slug(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return cleaned[:32] or "guest"
