"""Presence over long polling: `GET {prefix}/rooms/{room}/presence/poll?epoch=E&offset=N&timeout=S`.

Answers at once when the log has anything after (E, N), else holds the request until the next
event or S seconds. The wait is the backend's own (one asyncio.Event per room wakes every
waiter), never a loop of sleeps. The client sends back the `epoch`/`offset` it was given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .backend import StateBackend
from .http_auth import json_response, protocol_errors, room_access
from .presence_watchers import WatcherPresence, presence_flag
from .protocol import EPOCH_PATTERN, bad_request
from .tokens import TokenIssuer

DEFAULT_TIMEOUT = 25.0
MAX_TIMEOUT = 60.0
OFFSET = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class PollQuery:
    epoch: str | None
    offset: int | None
    timeout: float


def parse_poll_query(query: Any) -> PollQuery:
    """Validate `epoch`, `offset` and `timeout`; a malformed value is a 400, never a guess."""
    epoch = query.get("epoch") or None
    if epoch is not None and EPOCH_PATTERN.fullmatch(epoch) is None:
        raise bad_request("epoch must match ^[A-Za-z0-9_-]{1,32}$")
    raw_offset = query.get("offset") or None
    if raw_offset is not None and OFFSET.fullmatch(raw_offset) is None:
        raise bad_request("offset must be a non-negative integer")
    raw_timeout = query.get("timeout")
    timeout = DEFAULT_TIMEOUT
    if raw_timeout is not None:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise bad_request(f"timeout must be a number of seconds from 0 to {MAX_TIMEOUT:g}") from None
        if not math.isfinite(timeout) or not 0 <= timeout <= MAX_TIMEOUT:
            raise bad_request(f"timeout must be a number of seconds from 0 to {MAX_TIMEOUT:g}")
    return PollQuery(epoch, int(raw_offset) if raw_offset is not None else None, timeout)


class PresencePoll:
    def __init__(self, issuer: TokenIssuer, backend: StateBackend, watchers: WatcherPresence) -> None:
        self.issuer = issuer
        self.backend = backend
        self.watchers = watchers

    @protocol_errors
    async def handle(self, request: web.Request) -> web.Response:
        room, claims = room_access(request, self.issuer)
        query = parse_poll_query(request.query)
        if presence_flag(request.query):
            # Before reading the log: a watcher's first poll sees itself in the snapshot.
            await self.watchers.renew(room, claims, "longpoll", query.timeout)
        recovery = await self.backend.recover(room, query.epoch, query.offset, wait=query.timeout)
        body: dict[str, Any] = {"epoch": recovery.epoch, "offset": recovery.offset}
        if recovery.is_snapshot:
            body["snapshot"] = {"participants": recovery.participants}
        else:
            body["events"] = recovery.events
        response = json_response(body)
        response.headers["Cache-Control"] = "no-store"
        return response
