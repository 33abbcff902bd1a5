"""A small EventSource-format reader over an aiohttp response, for the presence SSE tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class SSEEvent:
    event: str
    id: str | None
    data: str

    def json(self) -> Any:
        return orjson.loads(self.data)

    @property
    def offset(self) -> int:
        assert self.id is not None
        return int(self.id.rsplit(":", 1)[1])


@dataclass
class SSEReader:
    """Parses the stream as the HTML spec says EventSource does (fields, comments, blank lines)."""

    response: aiohttp.ClientResponse
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str | None = None

    async def next(self, timeout: float = 5) -> SSEEvent | None:
        """The next dispatched event; None when the server ended the stream."""
        event, data = "", []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        return SSEEvent(event or "message", self.last_event_id, "\n".join(data))
                    event = ""
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    self.last_event_id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)

    async def take(self, count: int, timeout: float = 5) -> list[SSEEvent]:
        events = []
        for _ in range(count):
            event = await self.next(timeout)
            assert event is not None, f"the stream ended after {events}"
            events.append(event)
        return events
