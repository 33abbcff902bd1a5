"""signaling/socketio_internals/: the pinned releases, and every library internal the package
overrides or relies on, where it was and as it was: a release that moves or changes one of them
fails here, by name, before anything behaves differently. (What each override does is tested
through real clients in tests/signaling/socketio_internals/.)"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect

import engineio
import pytest
import socketio
from aiohttp import web
from aiohttp._websocket import reader as websocket_reader
from engineio.async_drivers import aiohttp as aiohttp_driver
from engineio.async_socket import AsyncSocket
from roomwire.signaling import socketio_internals
from roomwire.signaling.socketio_internals import (
    DirectEmitManager,
    EngineServer,
    EngineSocket,
    IncompatibleSocketIO,
    SocketLimits,
    SocketServer,
    WebSocketDriver,
)


def test_the_installed_releases_are_the_pinned_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    socketio_internals.verify()
    monkeypatch.setitem(socketio_internals.PINNED, "python-socketio", "0.0.1")
    with pytest.raises(IncompatibleSocketIO, match=r"0\.0\.1"):
        socketio_internals.verify()
    monkeypatch.undo()
    monkeypatch.setattr(socketio_internals, "AIOHTTP_SERIES", "0.1")
    with pytest.raises(IncompatibleSocketIO, match=r"aiohttp 0\.1"):
        socketio_internals.verify()


@pytest.mark.parametrize(
    ("owner", "method", "parameters"),
    [
        (socketio.AsyncServer, "_handle_eio_message", ["eio_sid", "data"]),
        (socketio.AsyncServer, "_handle_event", ["eio_sid", "namespace", "id", "data"]),
        (socketio.AsyncServer, "_handle_event_internal", ["server", "sid", "eio_sid", "data", "namespace", "id"]),
        (socketio.AsyncServer, "_get_event_handler", ["event", "namespace", "args"]),
        (socketio.AsyncServer, "_handle_connect", ["eio_sid", "namespace", "data"]),
        (socketio.AsyncServer, "_handle_eio_connect", ["eio_sid", "environ"]),
        (socketio.AsyncServer, "_handle_eio_disconnect", ["eio_sid", "reason"]),
        (socketio.AsyncServer, "_send_packet", ["eio_sid", "pkt"]),
        (socketio.AsyncServer, "_engineio_server_class", []),
        (socketio.AsyncServer, "handle_request", ["args", "kwargs"]),
        (socketio.AsyncManager, "emit", ["event", "data", "namespace", "room", "skip_sid", "callback", "to", "kwargs"]),
        (socketio.AsyncManager, "basic_enter_room", ["sid", "namespace", "room", "eio_sid"]),
        (socketio.AsyncManager, "basic_leave_room", ["sid", "namespace", "room"]),
        (socketio.AsyncManager, "basic_disconnect", ["sid", "namespace", "kwargs"]),
        (engineio.AsyncServer, "_handle_connect", ["environ", "transport", "jsonp_index"]),
        (engineio.AsyncServer, "send_packet", ["sid", "pkt"]),
        (engineio.AsyncServer, "create_queue", ["args", "kwargs"]),
        (AsyncSocket, "__init__", ["server", "sid"]),
        (AsyncSocket, "_websocket_handler", ["ws"]),
        (AsyncSocket, "send", ["pkt"]),
        (AsyncSocket, "schedule_ping", []),
        (AsyncSocket, "check_ping_timeout", []),
        (AsyncSocket, "close", ["wait", "abort", "reason"]),
        (AsyncSocket, "receive", ["pkt"]),
        (aiohttp_driver.WebSocket, "__init__", ["handler", "server"]),
        (aiohttp_driver.WebSocket, "__call__", ["environ"]),
        (socketio.packet.Packet, "decode", ["encoded_packet"]),
        (web.WebSocketResponse, "_post_start", ["request", "protocol", "writer"]),
        (websocket_reader.WebSocketDataQueue, "feed_data", ["data", "size"]),
    ],
)
def test_the_internals_we_override_are_where_they_were(owner: type, method: str, parameters: list[str]) -> None:
    found = list(inspect.signature(getattr(owner, method)).parameters)[1:]
    assert found == parameters


# What roomwire replaces whole, or whose exact behaviour its replacements keep (see each in
# socketio_internals/): the source of each as the pinned releases ship it.
LIBRARY_SOURCE = [
    ("engineio.async_server.AsyncServer._handle_connect", "5bd7edc1d1ae115a"),
    ("engineio.async_server.AsyncServer._service_task", "b6358bda51d0b34b"),
    ("engineio.async_server.AsyncServer.send_packet", "c54317440865030d"),
    ("engineio.async_socket.AsyncSocket._websocket_handler", "27f120df4d717a24"),
    ("engineio.async_socket.AsyncSocket.schedule_ping", "fe316639159cd70d"),
    ("engineio.async_socket.AsyncSocket._send_ping", "67db82a704ea49d0"),
    ("engineio.async_socket.AsyncSocket.send", "0437276ccba7ab09"),
    ("engineio.async_socket.AsyncSocket.check_ping_timeout", "77616d5ca7809257"),
    ("engineio.async_socket.AsyncSocket.close", "faa2e93902543244"),
    ("engineio.async_socket.AsyncSocket.receive", "a91ae36ec2fb5340"),
    ("engineio.async_socket.AsyncSocket.poll", "826f58a9f3606db2"),
    ("engineio.async_socket.AsyncSocket.handle_get_request", "05eaae9f0a60d9be"),
    ("engineio.async_socket.AsyncSocket._upgrade_websocket", "820b83efe96adb98"),
    ("engineio.base_socket.BaseSocket.__init__", "8532b631a4dc815f"),
    ("engineio.async_drivers.aiohttp.WebSocket.__call__", "71f9a94476d737c3"),
    ("engineio.async_drivers.aiohttp.WebSocket.wait", "992c370917677d39"),
    ("engineio.async_drivers.aiohttp.WebSocket.send", "9acf5561b663a59f"),
    ("engineio.async_drivers.aiohttp.translate_request", "20aa782740060790"),
    ("socketio.async_server.AsyncServer._handle_event", "65178105ef8b593d"),
    ("socketio.async_server.AsyncServer._handle_event_internal", "472e8b723a12d507"),
    ("socketio.async_server.AsyncServer._send_packet", "a00022b42c1c29e9"),
    ("socketio.async_server.AsyncServer._handle_eio_message", "bef50fc0e1635921"),
    ("socketio.packet.Packet.decode", "61ad7904b539f472"),
    ("socketio.async_server.AsyncServer.handle_request", "fdf4d1481b6ae726"),
    ("socketio.base_server.BaseServer._get_event_handler", "e18d9a6570aaaaf4"),
    ("socketio.base_manager.BaseManager.basic_disconnect", "2933b50bc4b2ea7b"),
    ("socketio.base_manager.BaseManager.basic_enter_room", "3f509586d2d7f47e"),
    ("socketio.base_manager.BaseManager.basic_leave_room", "e27f3eea06d1c6a6"),
    ("socketio.async_manager.AsyncManager.emit", "01ccd5b82b4f955e"),
    ("aiohttp.web_ws.WebSocketResponse._post_start", "5537cb3f2ecae6ed"),
    ("aiohttp._websocket.reader_py.WebSocketDataQueue.feed_data", "2f38295087b8809f"),
    ("aiohttp.web_ws.WebSocketResponse.receive", "7ba90b3668b041b1"),
]


def _resolve(path: str) -> object:
    """`package.module.Class.method` -> that object."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        return functools.reduce(getattr, parts[split:], module)
    raise ImportError(path)


@pytest.mark.parametrize(("path", "digest"), LIBRARY_SOURCE)
def test_the_library_code_we_replace_or_rely_on_is_unchanged(path: str, digest: str) -> None:
    source = inspect.getsource(_resolve(path))  # type: ignore[arg-type]
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, f"{path} changed: read it again"


def test_the_attributes_we_use_are_there() -> None:
    # python-engineio's: the server's sockets and async mode table, a socket's state and queue
    server = EngineServer(async_mode="aiohttp")
    assert isinstance(server.sockets, dict)
    assert server._async["websocket"] is WebSocketDriver and "translate_request" in server._async
    assert server.start_service_task is False  # no monitor task: the heartbeats do its work
    socket = EngineSocket(server, "sid")
    for attribute in ("last_ping", "connected", "upgrading", "upgraded", "closing", "closed", "queue", "session"):
        assert hasattr(socket, attribute), attribute
    # the aiohttp driver keeps the handler and server it was given; python-socketio registers
    # its message handler with python-engineio, and its manager's rooms are plain dicts
    driver = WebSocketDriver(socket._websocket_handler, server)
    assert driver.handler == socket._websocket_handler and driver.server is server
    sio = SocketServer(limits=SocketLimits(), async_mode="aiohttp", client_manager=DirectEmitManager())
    assert sio.eio.handlers["message"] == sio._handle_eio_message
    assert sio.handle_request == sio.eio.handle_request
    assert isinstance(sio.manager.rooms, dict) and isinstance(sio.manager.pending_connect, dict)
