"""python-socketio's server and client manager with roomwire's rules: refused frames answered in
their ack, deadlines for sockets that never connect, events dispatched and answered without
awaiting the write, broadcasts without a task per recipient."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import engineio
import socketio
from socketio import packet as sio_packet

from ..protocol import RESERVED_EVENTS, ProtocolError, bad_request
from .engine import EngineServer, SocketLimits
from .packets import RefusedPayload, WirePacket, encoded, plain_event
from .wire import Message

log = logging.getLogger("roomwire.socketio")

# (sid, why) -> the ack to send: the composition root points it at the API's guard, so that
# refused frames are rate limited and counted like any other event.
RefusedHandler = Callable[[str, str], Awaitable[dict[str, Any]]]


class SocketServer(socketio.AsyncServer):
    """python-socketio's server with roomwire's rules at the door (see the module docstring)."""

    def __init__(
        self,
        *,
        limits: SocketLimits,
        websocket_compression: bool = False,
        dropped: Callable[[], None] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(serializer=WirePacket, **options)
        self.eio.limits = limits
        self.eio.websocket_compression = websocket_compression
        self.eio.on_dropped = self._dropped
        self.eio.take_event = self._take_event
        # python-socketio's `handle_request` only awaits Engine.IO's: one coroutine fewer held
        # for the whole life of every WebSocket
        self.handle_request = self.eio.handle_request
        self._count_dropped = dropped
        self._on_refused: RefusedHandler | None = None
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        # events whose handlers start no timeout before they first wait, run at once (eager.py)
        self.eager_events: set[str] = set()
        # eio_sid -> the task of its socket's last event handled in a task, until it is done: an
        # eager event arriving meanwhile gets a task too, so as not to overtake it
        self._event_tasks: dict[str, asyncio.Task[None]] = {}

    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return EngineServer

    def on_refused(self, handler: RefusedHandler) -> None:
        """Answer refused event frames (reserved or non-string names, undecodable JSON)."""
        self._on_refused = handler

    # -- frames python-socketio would mishandle ------------------------------------------------

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except ValueError as exc:  # a frame the decoder cannot read at all: nothing to answer
            log.debug("dropped an unreadable packet from %s: %s", eio_sid, exc)

    def _take_event(self, eio_sid: str, text: str) -> bool:
        """An event frame as its WebSocket's parser reads it: its task is started in the same
        pass of the event loop (python-socketio's `_handle_eio_message` for an EVENT packet; no
        binary packet is ever pending: `WirePacket` refuses them). The usual frame is read by
        `plain_event`; any other by `WirePacket`."""
        event = plain_event(text)
        if event is not None:
            self._start_event(eio_sid, "/", *event)
            return True
        try:
            pkt = self.packet_class(encoded_packet=text)
        except ValueError as exc:
            log.debug("dropped an unreadable packet from %s: %s", eio_sid, exc)
            return True
        if pkt.packet_type != sio_packet.EVENT:
            return False
        self._start_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        return True

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        self._start_event(eio_sid, namespace, id, data)

    def _start_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        """A task for the event's handler, or for the ack that refuses it."""
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):  # before the namespace connect
            self._ack(eio_sid, namespace, id, [ProtocolError("unauthorized", "connect to the namespace first").ack()])
        elif (why := _refusal(data)) is not None:
            self._run(eio_sid, self._refuse(sid, eio_sid, namespace, id, why), eager=False)
        else:
            # python-socketio's, less its logging and its task helper's checks: a task per event
            # (none for an eager one that finishes without waiting)
            work = self._handle_event_internal(self, sid, eio_sid, data, namespace, id)
            self._run(eio_sid, work, eager=data[0] in self.eager_events)

    def _run(self, eio_sid: str, work: Coroutine[Any, Any, None], *, eager: bool) -> None:
        """Handle a socket's event in a task, or at once if it is eager and every event of the
        socket before it is done: eager events never overtake the socket's earlier ones."""
        waiting = self._event_tasks
        task = self.eio.run_now(work) if eager and eio_sid not in waiting else self.eio.in_background(work)
        if task is not None:
            waiting[eio_sid] = task
            task.add_done_callback(functools.partial(self._event_done, eio_sid))

    def _event_done(self, eio_sid: str, task: asyncio.Task[None]) -> None:
        if self._event_tasks.get(eio_sid) is task:
            del self._event_tasks[eio_sid]

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: list[Any], namespace: str, id: int | None
    ) -> None:
        # python-socketio's, for roomwire's handlers: coroutine functions, no namespace classes
        handler, args = self._get_event_handler(data[0], namespace, (sid, *data[1:]))
        if handler is None:
            return
        answer = await handler(*args)
        args = [] if answer is None else list(answer) if isinstance(answer, tuple) else [answer]
        self._ack(eio_sid, namespace, id, args)

    def _ack(self, eio_sid: str, namespace: str, id: int | None, args: list[Any]) -> None:
        """Answer the event with ack id `id` (none: nothing to answer)."""
        if id is not None:
            self._send_text(eio_sid, encoded(sio_packet.ACK, namespace, args, id))

    async def _send_packet(self, eio_sid: str, pkt: sio_packet.Packet) -> None:
        # python-socketio's, without awaiting: roomwire's packets have no binary attachments
        self._send_text(eio_sid, pkt.encode())

    def send_event(self, sid: str, event: str, data: Any) -> None:
        """Emit `event` with `data` to one connection of this node (nothing if it is gone): what
        `emit(event, data, to=sid)` does, without the room lookup and two coroutines per emit."""
        eio_sid = self.manager.eio_sid_from_sid(sid, "/")
        if eio_sid is not None:
            self._send_text(eio_sid, encoded(sio_packet.EVENT, "/", [event, data]))

    def _send_text(self, eio_sid: str, text: str) -> None:
        """Send an encoded Socket.IO packet."""
        self.eio.deliver(eio_sid, Message(text))

    async def _refuse(self, sid: str, eio_sid: str, namespace: str, id: int | None, why: str) -> None:
        """A connected socket's event frame that is not dispatched: answered in its ack."""
        refused = self._on_refused
        self._ack(eio_sid, namespace, id, [await refused(sid, why) if refused is not None else bad_request(why).ack()])

    # -- deadlines ---------------------------------------------------------------------------

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        self._close_unless_connected(eio_sid, self.eio.limits.connect_timeout)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await super()._handle_connect(eio_sid, namespace, data)
        if self.manager.sid_from_eio_sid(eio_sid, namespace or "/") is None:  # refused
            self._close_unless_connected(eio_sid, self.eio.limits.close_after_refusal)
        else:
            self._cancel_deadline(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        self._cancel_deadline(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)

    def _cancel_deadline(self, eio_sid: str) -> None:
        deadline = self._deadlines.pop(eio_sid, None)
        if deadline is not None:
            deadline.cancel()

    def _close_unless_connected(self, eio_sid: str, delay: float) -> None:
        self._cancel_deadline(eio_sid)
        loop = asyncio.get_running_loop()
        self._deadlines[eio_sid] = loop.call_later(delay, self._deadline_passed, eio_sid)

    def _deadline_passed(self, eio_sid: str) -> None:
        self._deadlines.pop(eio_sid, None)
        if self.manager.sid_from_eio_sid(eio_sid, "/") is None and eio_sid in self.eio.sockets:
            log.debug("closing %s: no Socket.IO connection was made", eio_sid)
            self.eio.in_background(self.eio.cut(eio_sid, at_once=False))

    def _dropped(self, eio_sid: str, why: str) -> None:
        log.warning("dropping connection %s: %s", eio_sid, why)
        if self._count_dropped is not None:
            self._count_dropped()


def _refusal(data: Any) -> str | None:
    """Why an event frame's data is not dispatched, or None."""
    if isinstance(data, RefusedPayload):
        return data.why
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        return "an event's name must be a string"
    if data[0] in RESERVED_EVENTS:
        return f"{data[0]!r} is a reserved event name"
    return None


class DirectEmitManager(socketio.AsyncManager):
    """Broadcasts without one asyncio task per recipient, and disconnects that only look at the
    rooms of the one disconnecting.

    python-socketio's `AsyncManager.emit` wraps each recipient's send in `asyncio.create_task`
    and waits for them all. Here the one encoded packet (and its one WebSocket frame) is handed
    to each recipient's socket in a plain loop, in order, awaiting nothing (docs/benchmarks.md).
    Emits that carry a callback (an ack id per recipient) take the stock path.

    python-socketio's `basic_disconnect` copies and searches every room of the namespace (each
    socket has one of its own), so each disconnect cost as much as all connections together.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rooms_of: dict[str, dict[str, tuple[Any, ...]]] = {}  # namespace -> sid -> its rooms

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        index = self._rooms_of.setdefault(namespace, {})
        rooms = index.get(sid, ())
        if room not in rooms:
            index[sid] = (*rooms, room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        index = self._rooms_of.get(namespace, {})
        rooms = tuple(r for r in index.get(sid, ()) if r != room)
        if rooms:
            index[sid] = rooms
        else:
            index.pop(sid, None)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # python-socketio's, with the sid's own rooms instead of a search of all of them
        if namespace not in self.rooms:
            return
        for room in self._rooms_of.get(namespace, {}).get(sid, ()):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if sid in pending.get(namespace, ()):
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

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
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        packet = Message(encoded(sio_packet.EVENT, namespace, [event, *args]))
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        deliver = self.server.eio.deliver
        for sid, eio_sid in self.get_participants(namespace, to or room):
            if sid not in skip:
                deliver(eio_sid, packet)


def has_local_members(sio: socketio.AsyncServer, room: str) -> bool:
    """Whether any socket of this node is in the Socket.IO room."""
    return bool(sio.manager.rooms.get("/", {}).get(room))
