"""Socket.IO packets through orjson, and what a frame orjson refuses is decoded to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from socketio import packet as sio_packet


class OrjsonCodec:
    """The `json` module interface python-socketio calls (`dumps`, `loads`), backed by orjson."""

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


@dataclass(frozen=True)
class RefusedPayload:
    """Stands for the data of a packet whose JSON orjson refused, so that the event is still
    dispatched (its ack id was read before the JSON) and answered with `why`."""

    why: str


class WirePacket(sio_packet.Packet):
    """Socket.IO packets encoded and decoded by orjson. roomwire sends no binary, so the walk
    over every payload looking for bytes is skipped."""

    json = OrjsonCodec
    uses_binary_events = False

    def decode(self, encoded_packet: str) -> int:
        """python-socketio's, with every frame read as one whole packet. Its decoder reads a
        `<digits>-` attachment count after any packet type, so `421-` became an event without
        an ack id waiting for one binary frame; only binary packets count attachments (the JS
        parser reads `421-` as ack id 1 and JSON that cannot be valid). Binary packets are
        refused outright, keeping their ack id: a pending one would swallow the socket's next
        frames as its attachments, and roomwire's events are JSON."""
        kind, rest = encoded_packet[:1], encoded_packet[1:]
        count, dash, after = rest.partition("-") if rest[:1].isdigit() else ("", "", "")
        counted = bool(dash) and count.isdigit()
        if kind in _TEXT_KIND_OF_BINARY:
            return self._refused(
                _TEXT_KIND_OF_BINARY[kind] + (after if counted else rest),
                "binary packets are not accepted: roomwire's events are JSON",
            )
        if counted:
            return self._refused(kind + count, "the event's JSON is not valid: it starts with '-'")
        try:
            return super().decode(encoded_packet)
        except orjson.JSONDecodeError as exc:  # raised by the JSON, the last thing decode() reads
            return self._refused(None, f"the event's JSON is not valid: {exc}")

    def _refused(self, encoded_packet: str | None, why: str) -> int:
        """Keep the type, namespace and ack id of `encoded_packet` (already read when None), with
        `why` for its data."""
        if encoded_packet is not None:
            try:
                super().decode(encoded_packet)
            except orjson.JSONDecodeError:
                pass
        self.data = RefusedPayload(why)
        return 0


_PLAIN_EVENT = re.compile(r"2(\d{0,100})\[")  # EVENT, the default namespace, an optional ack id, an array


def plain_event(text: str) -> tuple[int | None, list[Any]] | None:
    """The ack id and data of the frame every client event arrives in (`2<id>[...]`: the default
    namespace, valid JSON), read in one pass; None for any other frame, which `WirePacket`
    decodes (and answers if it must) the same way it always does."""
    match = _PLAIN_EVENT.match(text)
    if match is None:
        return None
    try:
        data = orjson.loads(text[match.end() - 1 :])
    except orjson.JSONDecodeError:
        return None
    digits = match.group(1)
    return (int(digits) if digits else None), data


def encoded(kind: int, namespace: str | None, data: Any, id: int | None = None) -> str:
    """What `WirePacket(kind, namespace=namespace, data=data, id=id).encode()` returns for a
    text packet, without building the packet: every event's ack and every emit is encoded here."""
    text = str(kind) if namespace is None or namespace == "/" else f"{kind}{namespace},"
    if id is not None:
        text += str(id)
    return text if data is None else text + orjson.dumps(data).decode()


_TEXT_KIND_OF_BINARY = {
    str(sio_packet.BINARY_EVENT): str(sio_packet.EVENT),
    str(sio_packet.BINARY_ACK): str(sio_packet.ACK),
}
