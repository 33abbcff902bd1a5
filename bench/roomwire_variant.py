"""roomwire's signaling server with candidate tunings switched on one by one, for the benchmark.

    .venv/bin/python bench/roomwire_variant.py --port P --secret S [--uvloop] [--no-deflate] [--orjson]
                                               [--direct-emit]

bench/signaling.py runs this instead of `roomwire serve` when given `--roomwire-variant`, so
each proposed change to signaling/ is measured before it is made. With no flag it serves what
`roomwire serve --dev --media none --log-level warning` serves, minus the web client routes
(which the benchmark never requests) and on the event loop `roomwire serve` really gets.
  --uvloop      run on uvloop (web.run_app makes its own loop: setting one beforehand is ignored)
  --no-deflate  refuse WebSocket permessage-deflate, as Node's socket.io does by default
  --orjson      python-socketio/engine.io encode and decode packets with orjson
  --direct-emit a broadcast queues its one encoded packet on each recipient's socket in a loop,
                instead of python-socketio's one asyncio task per recipient
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import engineio
import orjson
import socketio
from aiohttp import web

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository, not bench/

from signaling import SignalingServer  # noqa: E402


class OrjsonCodec:
    """The `json` module shape python-socketio calls: dumps(obj, **kw) -> str, loads(s) -> obj.

    orjson refuses integers beyond 64 bits, which covers the huge-integer guard engine.io's
    own json wrapper adds.
    """

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)


class DirectEmitManager(socketio.AsyncManager):
    """python-socketio's in-process manager, minus a task per recipient for plain emits.

    AsyncManager.emit wraps every recipient's send in asyncio.create_task and waits for them
    all; the send only puts the packet on that socket's queue (its writer task does the I/O),
    so a loop does the same work in order without a task, a WeakSet entry and a wake-up each.
    Emits with a callback (one ack id per recipient) keep the stock path.
    """

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None or namespace not in self.rooms:
            return await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
            )
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self.server.packet_class(socketio.packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        packets = [engineio.packet.Packet(engineio.packet.MESSAGE, part) for part in (
            encoded if isinstance(encoded, list) else [encoded]
        )]  # fmt: skip
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        # A snapshot: a send may close a timed-out socket, which leaves its rooms meanwhile.
        recipients = [eio_sid for sid, eio_sid in self.get_participants(namespace, to or room) if sid not in skip]
        for eio_sid in recipients:
            for pkt in packets:
                await self.server.eio.send_packet(eio_sid, pkt)


@web.middleware
async def without_websocket_deflate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # python-engineio builds aiohttp's WebSocketResponse with its default compress=True and
    # offers no switch; without the client's offer in the handshake nothing is negotiated.
    if "Sec-WebSocket-Extensions" in request.headers:
        headers = request.headers.copy()
        del headers["Sec-WebSocket-Extensions"]
        request = request.clone(headers=headers)
    return await handler(request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--no-deflate", action="store_true")
    parser.add_argument("--orjson", action="store_true")
    parser.add_argument("--direct-emit", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.orjson:
        socketio.packet.Packet.json = OrjsonCodec  # what AsyncServer(json=...) sets, too
    app = web.Application(middlewares=[without_websocket_deflate] if args.no_deflate else [])
    manager = DirectEmitManager() if args.direct_emit else None
    SignalingServer(secret=args.secret, dev=True, client_manager=manager).attach(app)
    loop = None
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(
        app, host="127.0.0.1", port=args.port, handler_cancellation=True, shutdown_timeout=3, loop=loop, print=None
    )


if __name__ == "__main__":
    main()
