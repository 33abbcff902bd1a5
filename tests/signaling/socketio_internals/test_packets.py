"""signaling/socketio_internals/packets.py: Socket.IO packets through orjson, and the stand-in for
a payload whose JSON orjson refuses (the frame keeps its type and ack id, so it is answered)."""

from __future__ import annotations

import socketio
from roomwire.signaling.socketio_internals import RefusedPayload, WirePacket, encoded


def test_a_packet_whose_json_is_refused_keeps_its_type_and_ack_id() -> None:
    packet = WirePacket(encoded_packet='27["update",{"name":"a\\ud800"}]')
    assert packet.packet_type == socketio.packet.EVENT and packet.id == 7
    assert isinstance(packet.data, RefusedPayload)
    deep = WirePacket(encoded_packet="212" + "[" * 2000 + "]" * 2000)
    assert deep.id == 12 and isinstance(deep.data, RefusedPayload)
    assert WirePacket(encoded_packet='2["join",{}]').data == ["join", {}]


def test_packets_are_encoded_compactly_and_never_as_binary() -> None:
    packet = WirePacket(socketio.packet.EVENT, data=["message", {"data": b"bytes".decode(), "n": [1, 2]}], id=3)
    assert packet.packet_type == socketio.packet.EVENT  # no walk of the payload looking for bytes
    assert packet.encode() == '23["message",{"data":"bytes","n":[1,2]}]'


def test_acks_and_events_are_encoded_as_python_socketio_encodes_them() -> None:
    payloads = [None, [], [{"ok": True}], ["signal", {"from": "a", "data": {"sdp": "v=0\r\né"}}], [1.5, None, "x,y"]]
    for kind in (socketio.packet.EVENT, socketio.packet.ACK):
        for namespace in (None, "/", "/admin"):
            for id in (None, 0, 17):
                for data in payloads:
                    expected = WirePacket(kind, namespace=namespace, data=data, id=id).encode()
                    assert encoded(kind, namespace, data, id) == expected, (kind, namespace, id, data)


def test_only_binary_packets_count_attachments_and_binary_packets_are_refused_with_their_ack_id() -> None:
    # `421-` is ack id 1 followed by JSON that cannot be valid, not one attachment to wait for
    for frame in ("21-", '21-["update",{}]', "21--1"):
        packet = WirePacket(encoded_packet=frame)
        assert packet.packet_type == socketio.packet.EVENT and packet.id == 1, frame
        assert isinstance(packet.data, RefusedPayload) and packet.attachment_count == 0, frame
    for frame, kind in (('51-4["update",{}]', socketio.packet.EVENT), ("54[]", socketio.packet.EVENT),
                        ('61-/x,4[{"_placeholder":true,"num":0}]', socketio.packet.ACK)):  # fmt: skip
        packet = WirePacket(encoded_packet=frame)
        assert (packet.packet_type, packet.id, packet.attachment_count) == (kind, 4, 0), frame
        assert isinstance(packet.data, RefusedPayload) and "binary" in packet.data.why, frame
    assert WirePacket(encoded_packet="61-/x,4[]").namespace == "/x"
    assert WirePacket(encoded_packet='23["a-b",{"n":-1}]').data == ["a-b", {"n": -1}]
