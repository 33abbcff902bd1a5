"""Room data over the SFU: each publisher-PC `data` channel message reaches every other
participant's subscriber-PC `data` channel as `{"from": identity, "data": value}`.

Memory stays bounded per receiver: a channel whose `bufferedAmount` is above a bound (a slow
or stuck receiver) has messages dropped and counted, and at most a few messages wait for a
channel that is still connecting.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Any

from aiortc import RTCDataChannel
from roomwire.signaling.protocol import MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

MAX_BUFFERED_BYTES = 1024 * 1024
MAX_PENDING = 256


class DataSink:
    """One participant's subscriber-PC `data` channel."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        self.dropped = 0
        self.delivered = 0
        self._pending: deque[str] = deque()
        channel.on("open", self._flush)

    def send(self, text: str) -> None:
        state = self.channel.readyState
        if state == "connecting":
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
            else:
                self._pending.append(text)
        elif state == "open":
            if self.channel.bufferedAmount > MAX_BUFFERED_BYTES:
                self.dropped += 1
            else:
                self.channel.send(text)
                self.delivered += 1
        else:
            self.dropped += 1

    def _flush(self) -> None:
        pending, self._pending = self._pending, deque()
        for text in pending:
            self.send(text)

    def close(self) -> None:
        self._pending.clear()
        self.channel.remove_all_listeners()


class DataRelay:
    """The data fan-out of one room."""

    def __init__(self) -> None:
        self._sinks: dict[str, DataSink] = {}
        self.dropped_from_senders = 0

    def add_sink(self, identity: str, channel: RTCDataChannel) -> DataSink:
        self.remove_sink(identity)
        sink = self._sinks[identity] = DataSink(channel)
        return sink

    def remove_sink(self, identity: str, channel: RTCDataChannel | None = None) -> None:
        """Drop `identity`'s sink (only if it is still `channel`'s, when given)."""
        sink = self._sinks.get(identity)
        if sink is None or (channel is not None and sink.channel is not channel):
            return
        del self._sinks[identity]
        sink.close()

    def add_source(self, identity: str, channel: RTCDataChannel) -> None:
        """Relay what `identity` sends on its publisher-PC channel."""

        def on_message(message: Any) -> None:
            self.relay(identity, message)

        channel.on("message", on_message)

    def relay(self, sender: str, message: str | bytes) -> None:
        if not isinstance(message, str) or len(message) > MAX_MESSAGE_BYTES:
            # binary and oversized messages are not part of the wire contract
            self.dropped_from_senders += 1
            return
        try:
            value: Any = json.loads(message)
        except ValueError:
            value = message
        text = json.dumps({"from": sender, "data": value}, separators=(",", ":"))
        for identity, sink in self._sinks.items():
            if identity != sender:
                sink.send(text)

    @property
    def empty(self) -> bool:
        return not self._sinks
