"""parse_publish: an `sfu.publish` offer checked before anything touches a peer connection."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from roomwire.media.publish_offer import parse_publish
from roomwire.media.rtc import rtc_configuration
from roomwire.signaling.protocol import MAX_SDP_BYTES, Grants, ProtocolError


async def offer(*kinds: str, data: bool = True, codec: str | None = None) -> str:
    pc = RTCPeerConnection(rtc_configuration([]))
    for kind in kinds:
        transceiver = pc.addTransceiver(kind, direction="sendonly")
        if codec is not None:
            transceiver.setCodecPreferences(
                [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == codec]
            )
    if data:
        pc.createDataChannel("data")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_a_browser_like_offer_is_understood() -> None:
    parsed = parse_publish({"sdp": await offer("audio", "video"), "sources": {"1": "screen"}}, Grants())
    assert [(m.mid, m.kind, m.sending, m.source, m.mime_type) for m in parsed.media] == [
        ("0", "audio", True, "microphone", "audio/opus"),
        ("1", "video", True, "screen", "video/vp8"),
    ]
    assert parsed.has_data


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (lambda sdp: {"sdp": ""}, "bad_request", "`sdp`"),
        (lambda sdp: {"sdp": 5}, "bad_request", "`sdp`"),
        (lambda sdp: {"sdp": "v=0\r\n" + "a=x\r\n" * (MAX_SDP_BYTES // 5)}, "too_large", "limited"),
        (lambda sdp: {"sdp": sdp, "sources": {"0": "camera"}}, "bad_request", "not valid for audio"),
        (lambda sdp: {"sdp": sdp, "sources": ["camera"]}, "bad_request", "`sources`"),
        (lambda sdp: {"sdp": sdp.replace("a=mid:1", "a=mid:0")}, "bad_request", "unique a=mid"),
        (lambda sdp: {"sdp": sdp.replace("a=rtcp-mux\r\n", "")}, "bad_request", "rtcp-mux"),
        (lambda sdp: {"sdp": sdp.replace("a=ice-pwd:", "a=x-ice-pwd:")}, "bad_request", "ICE credentials"),
        (lambda sdp: {"sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}, "bad_request", "no media"),
    ],
)
async def test_bad_offers_are_refused_with_the_reason(change, code: str, message: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_publish(change(await offer("audio", "video")), Grants())
    assert refused.value.code == code and message in refused.value.message


async def test_a_codec_roomwire_does_not_forward_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"forwards Opus, VP8 and H\.264"):
        parse_publish({"sdp": await offer("audio", codec="audio/pcmu")}, Grants())


async def test_grants_decide_what_may_be_offered() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_publish({"sdp": await offer("video")}, Grants(publish=False))
    assert refused.value.code == "forbidden"
    with pytest.raises(ProtocolError) as refused:
        parse_publish({"sdp": await offer()}, Grants(publish=False, data=False))
    assert refused.value.code == "forbidden"
    assert parse_publish({"sdp": await offer()}, Grants(publish=False)).has_data
