"""Mounts the presence fallbacks (SSE and long polling) of a SignalingServer on an aiohttp app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .presence_poll import PresencePoll
from .presence_sse import PresenceSSE
from .presence_watchers import WatcherPresence

if TYPE_CHECKING:
    from .server import SignalingServer


@dataclass
class PresenceFallbacks:
    sse: PresenceSSE
    poll: PresencePoll
    watchers: WatcherPresence

    async def close(self, app: web.Application) -> None:
        # on_shutdown, before the server closes its backend: streams end (EventSource clients
        # reconnect, perhaps to another node), watchers leave.
        self.sse.close_streams()
        await self.watchers.close()


PRESENCE_KEY = web.AppKey("roomwire_presence", PresenceFallbacks)


def add_presence_routes(app: web.Application, server: SignalingServer, prefix: str) -> PresenceFallbacks:
    """`GET {prefix}/rooms/{room}/presence/sse` and `.../presence/poll`; CORS comes with the REST API's."""
    watchers = WatcherPresence(server)
    fallbacks = PresenceFallbacks(PresenceSSE(server, watchers), PresencePoll(server, watchers), watchers)
    app.add_routes(
        [
            # No HEAD: it would join and leave a `presence=1` watcher for nothing.
            web.get(f"{prefix}/rooms/{{room}}/presence/sse", fallbacks.sse.handle, allow_head=False),
            web.get(f"{prefix}/rooms/{{room}}/presence/poll", fallbacks.poll.handle, allow_head=False),
        ]
    )
    app[PRESENCE_KEY] = fallbacks
    app.on_shutdown.append(fallbacks.close)
    return fallbacks
