"""Embed roomwire's signaling API in your own aiohttp app, under /rtc.

Run:  ROOMWIRE_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))') \
      python examples/embedded_app.py
Then: a Socket.IO client connects to http://127.0.0.1:8081 with path "/rtc/socket.io" and
      auth {"token": ...}; GET /rtc/healthz answers; GET / is the app's own page.
"""

from __future__ import annotations

import logging
import os

from aiohttp import web
from roomwire.signaling import RUNNER_OPTIONS, SignalingServer

BANNED = {"mallory"}


@web.middleware
async def powered_by(request: web.Request, handler):
    """The app's own middleware: roomwire's routes pass through it like any other."""
    response = await handler(request)
    response.headers["X-Powered-By"] = "my-app"
    return response


async def home(request: web.Request) -> web.Response:
    server = request.app[RTC]
    rooms = await server.backend.rooms()
    return web.json_response({"app": "my-app", "rooms": [room.name for room in rooms]})


async def announce(request: web.Request) -> web.Response:
    """The app talks to a room from its own code: a server-side message."""
    server = request.app[RTC]
    room = request.match_info["room"]
    message_id = await server.send(room, {"text": await request.text()})
    return web.json_response({"id": message_id, "participants": len(await server.participants(room))})


RTC = web.AppKey("rtc", SignalingServer)
EVENTS = web.AppKey("events", list)


def create_app(secret: str) -> web.Application:
    app = web.Application(middlewares=[powered_by])
    app.router.add_get("/", home)
    app.router.add_post("/announce/{room}", announce)

    server = SignalingServer(secret=secret)
    app[RTC] = server
    app[EVENTS] = []  # what the hooks saw, for the demo (and its test)

    @server.on_join
    async def check_join(room: str, participant: dict) -> str | None:
        if participant["identity"] in BANNED:
            return "you are banned from this app"
        app[EVENTS].append(("join", room, participant["identity"]))
        return None

    @server.on_leave
    async def record_leave(room: str, participant: dict, reason: str) -> None:
        app[EVENTS].append(("leave", room, participant["identity"], reason))

    @server.on_message
    async def record_message(room: str, sender: str, data, to: str | None) -> None:
        app[EVENTS].append(("message", room, sender, data))

    server.attach(app, prefix="/rtc")
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    secret = os.environ.get("ROOMWIRE_SECRET")
    if not secret:
        raise SystemExit("set ROOMWIRE_SECRET to a long random string first (see the docstring)")
    web.run_app(create_app(secret), host="127.0.0.1", port=8081, **RUNNER_OPTIONS)
