"""aiohttp's server WebSocket, with frames taken by their Engine.IO socket as they are parsed.

aiohttp's parser puts each message it reads into a queue, and `receive()` returns it to the
task that waits there: one more pass of the event loop per message, and a wake-up of that task.
Here the parser offers each message to the socket first (`FrameQueue.take`), in the pass that
read it; what the socket does not take (connects, acks, closes, everything but events and
pongs) waits in the queue as before. The socket offers to take only while its reader waits with
nothing queued, so messages are never handled out of order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http import WebSocketWriter
from aiohttp.web_request import BaseRequest

# A message's data (a str for text frames) -> whether it was taken (handled, or dropped). It
# must not raise: it runs inside aiohttp's parser.
Taker = Callable[[Any], bool]


class FrameQueue(WebSocketDataQueue):
    """aiohttp's WebSocket message queue, which offers each message to `take` first."""

    __slots__ = ("take",)  # no __dict__: one of these per connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.take: Taker | None = None  # set while the socket's reader waits

    def feed_data(self, data: Any, size: int) -> None:
        take = self.take
        if take is None or self._buffer or not take(data.data):
            super().feed_data(data, size)


class ServerWebSocket(web.WebSocketResponse):
    """aiohttp's `WebSocketResponse` whose parser feeds a `FrameQueue`."""

    _reader: FrameQueue

    def _post_start(self, request: BaseRequest, protocol: str | None, writer: WebSocketWriter) -> None:
        # aiohttp's, with a FrameQueue in place of its WebSocketDataQueue
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        loop = self._loop
        assert loop is not None
        self._reader = FrameQueue(request._protocol, DEFAULT_CHUNK_SIZE, loop=loop)
        self._parser = WebSocketReader(
            self._reader, self._max_msg_size, compress=bool(self._compress), decode_text=self._decode_text
        )
        received = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(self._parser, data_received_cb=received)
        request.protocol.keep_alive(False)
