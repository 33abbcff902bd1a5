"""The REST API: health, metrics, tokens, rooms, kicks and server messages (PROTOCOL.md)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from .http_auth import (
    install_cors,
    json_body,
    json_response,
    path_room,
    protocol_errors,
    require_admin,
    room_access,
)
from .metrics import CONTENT_TYPE_LATEST
from .protocol import ProtocolError, bad_request, parse_message, valid_room
from .tokens import DEFAULT_TTL, Grants, check_metadata, check_name

if TYPE_CHECKING:
    from .server import SignalingServer


def add_rest_routes(app: web.Application, server: SignalingServer, prefix: str) -> None:
    api = RestAPI(server)
    routes = [
        web.get(f"{prefix}/healthz", api.healthz),
        web.get(f"{prefix}/metrics", api.metrics),
        web.post(f"{prefix}/api/tokens", api.create_token),
        web.get(f"{prefix}/api/rooms", api.list_rooms),
        web.get(f"{prefix}/api/rooms/{{room}}", api.get_room),
        web.delete(f"{prefix}/api/rooms/{{room}}/participants/{{identity}}", api.kick),
        web.post(f"{prefix}/api/rooms/{{room}}/messages", api.send_message),
    ]
    if server.dev:
        routes.append(web.post(f"{prefix}/api/dev/token", api.dev_token))
    app.add_routes(routes)
    install_cors(app, prefix, server.cors_origins)


class RestAPI:
    def __init__(self, server: SignalingServer) -> None:
        self.server = server

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        rooms = await self.server.backend.rooms()
        self.server.metrics.rooms.set(len(rooms))
        self.server.metrics.participants.set(sum(room.participants for room in rooms))
        return web.Response(body=self.server.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @protocol_errors
    async def create_token(self, request: web.Request) -> web.Response:
        require_admin(request, self.server.issuer)
        body = await json_body(request)
        try:
            token = self.server.issuer.mint(
                identity=body.get("identity"),  # type: ignore[arg-type]
                room=body.get("room"),
                name=check_name(body.get("name", "")),
                metadata=check_metadata(body.get("metadata", {})),
                grants=Grants.parse(body.get("grants")),
                ttl=body.get("ttl", DEFAULT_TTL),
            )
        except (ValueError, TypeError) as exc:
            raise bad_request(str(exc)) from None
        return json_response({"token": token})

    @protocol_errors
    async def list_rooms(self, request: web.Request) -> web.Response:
        require_admin(request, self.server.issuer)
        rooms = await self.server.backend.rooms()
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
        room, _ = room_access(request, self.server.issuer)
        snapshot = await self.server.backend.snapshot(room)
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
        require_admin(request, self.server.issuer)
        room = path_room(request)
        identity = request.match_info["identity"]
        if not await self.server.kick(room, identity):
            raise ProtocolError("not_found", f"{identity!r} is not in room {room!r}")
        return web.Response(status=204)

    @protocol_errors
    async def send_message(self, request: web.Request) -> web.Response:
        require_admin(request, self.server.issuer)
        room = path_room(request)
        data, to = parse_message(await json_body(request))
        if not await self.server.participants(room):
            raise ProtocolError("not_found", f"no room {room!r}")
        message_id = await self.server.send(room, data, to=to)
        return json_response({"id": message_id})

    @protocol_errors
    async def dev_token(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        room, name = body.get("room"), body.get("name", "")
        if not valid_room(room):
            raise bad_request("room names match ^[A-Za-z0-9_-]{1,64}$")
        try:
            name = check_name(name)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        identity = f"{slug(name)}-{secrets.token_hex(3)}"
        token = self.server.issuer.mint(identity=identity, room=room, name=name or identity)
        return json_response({"token": token, "identity": identity})


def slug(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return cleaned[:32] or "guest"


