"""Socket.IO packets through orjson, and what a frame orjson refuses is decoded to."""

from __future__ import annotations

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
        try:
            return super().decode(encoded_packet)
        except orjson.JSONDecodeError as exc:  # raised by the JSON, the last thing decode() reads
            self.data = RefusedPayload(f"the event's JSON is not valid: {exc}")
            return 0
