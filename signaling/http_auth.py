"""HTTP plumbing shared by the REST API and the presence fallbacks: errors, tokens, CORS."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from .protocol import ProtocolError, bad_request, encoded_json, valid_room
from .tokens import Claims, TokenIssuer

log = logging.getLogger("roomwire.http")

HttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AnyHandler = Callable[..., Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(exc: ProtocolError) -> web.Response:
    return json_response(exc.body(), status=exc.status)


def protocol_errors(handler: AnyHandler) -> AnyHandler:
    """Answer every failure of a roomwire route (function or method) in the protocol's error format."""

    @functools.wraps(handler)
    async def wrapped(*args: Any) -> web.StreamResponse:
        request: web.Request = args[-1]
        try:
            return await handler(*args)
        except ProtocolError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return error_response(ProtocolError("internal", "the server failed to handle this request"))

    return wrapped


def request_token(request: web.Request) -> str | None:
    """`Authorization: Bearer T`, or `?token=T` for clients that cannot set headers."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ProtocolError("unauthorized", "the Authorization header must be `Bearer <token>`")
        return value.strip()
    return request.query.get("token")


def authenticate(request: web.Request, issuer: TokenIssuer) -> Claims:
    return issuer.verify(request_token(request))


def path_room(request: web.Request) -> str:
    room = request.match_info["room"]
    if not valid_room(room):
        raise bad_request("room names match ^[A-Za-z0-9_-]{1,64}$")
    return room


def room_access(request: web.Request, issuer: TokenIssuer) -> tuple[str, Claims]:
    """The `{room}` of the path, and claims of a token that opens it (that room's, or admin)."""
    room = path_room(request)
    claims = authenticate(request, issuer)
    claims.require_room(room)
    return room, claims


def require_admin(request: web.Request, issuer: TokenIssuer) -> Claims:
    claims = authenticate(request, issuer)
    if not claims.grants.admin:
        raise ProtocolError("forbidden", "this call needs an admin token")
    return claims


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ProtocolError("too_large", "the request body is too large") from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the body must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    encoded_json(data, "the body")
    return data


def install_cors(app: web.Application, prefix: str, origins: Sequence[str]) -> None:
    """Allow the configured origins (and no others) on roomwire's own routes.

    Socket.IO does its own origin check (engineio's cors_allowed_origins).
    """
    allowed = frozenset(origins)
    if not allowed:
        return

    def applies(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        ours = request.path.startswith(prefix + "/") and not request.path.startswith(prefix + "/socket.io/")
        return origin if ours and origin in allowed else None

    @web.middleware
    async def preflight(request: web.Request, handler: HttpHandler) -> web.StreamResponse:
        if request.method == "OPTIONS" and applies(request) and "Access-Control-Request-Method" in request.headers:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
                    "Access-Control-Max-Age": "600",
                },
            )
        return await handler(request)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        # on_response_prepare runs before the headers go out, streaming responses (SSE) included.
        origin = applies(request)
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    app.middlewares.append(preflight)
    app.on_response_prepare.append(add_headers)
