"""signaling/socketio_internals/packets.py: Socket.IO packets through orjson, the stand-in for
a payload whose JSON orjson refuses (the frame keeps its type and ack id, so it is answered), and
the one-pass reading of the usual event frame, which reads what `WirePacket` reads."""

from __future__ import annotations

import socketio
from roomwire.signaling.socketio_internals import RefusedPayload, WirePacket, encoded, plain_event


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


def test_the_usual_event_frame_is_read_as_wire_packet_reads_it_and_any_other_is_left_to_it() -> None:
    sdp = {"sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=x:[1,2]-{3}"}
    usual = [
        '2["join",{}]',
        '27["signal",' + WirePacket(data=sdp).encode()[1:] + "]",
        '2007["update",{"name":"é"}]',
        "2" + "9" * 100 + '["leave"]',
        '20[1,2.5,null,"x"]',
        "2[]",
    ]
    for frame in usual:
        packet = WirePacket(encoded_packet=frame)
        assert packet.namespace is None and not isinstance(packet.data, RefusedPayload), frame
        assert plain_event(frame) == (packet.id, packet.data), frame
    left = [
        '2/admin,3["join",{}]',  # another namespace
        '21-["update",{}]',  # what looks like an attachment count
        '25["update",{"name":"a\\ud800"}]',  # JSON orjson refuses
        '2["join",{}',  # JSON cut short
        "2" + "9" * 101 + '["leave"]',  # an ack id over 100 digits
        '3["join"]',  # an ack, not an event
        '51-["join",{"_placeholder":true,"num":0}]',  # a binary event
        '2 ["join"]',
        "2",
    ]
    for frame in left:
        assert plain_event(frame) is None, frame
