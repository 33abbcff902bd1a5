"""Validation of an `sfu.publish` request, before anything touches a peer connection.

Everything a bad offer could trip over in `setRemoteDescription` is checked here first, with
aiortc's own parser and codec choice, so bad input is refused with a clear `ProtocolError`
and leaves the publisher's peer connection exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roomwire.signaling.protocol import MAX_SDP_BYTES, Grants, ProtocolError, bad_request

from . import aiortc_internals

SOURCES_BY_KIND = {"audio": ("microphone", "screen-audio"), "video": ("camera", "screen")}
DEFAULT_SOURCE = {"audio": "microphone", "video": "camera"}
FORWARDABLE = ("audio/opus", "video/vp8", "video/h264")
MAX_MEDIA_SECTIONS = 16
SENDING = ("sendonly", "sendrecv")


@dataclass(frozen=True)
class OfferedMedia:
    """One audio/video section of the client's offer."""

    mid: str
    kind: str
    sending: bool  # the client sends media on it (sendonly/sendrecv)
    source: str
    mime_type: str


@dataclass(frozen=True)
class PublishOffer:
    sdp: str
    media: list[OfferedMedia]
    has_data: bool

    @property
    def sending(self) -> list[OfferedMedia]:
        return [m for m in self.media if m.sending]


def parse_publish(payload: Any, grants: Grants) -> PublishOffer:
    if not isinstance(payload, dict):
        raise bad_request("sfu.publish takes {sdp, sources?}")
    sdp = payload.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise bad_request("`sdp` must be the offer's SDP text")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise ProtocolError("too_large", f"an SDP is limited to {MAX_SDP_BYTES} bytes")
    sources = payload.get("sources", {})
    if sources is None:
        sources = {}
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise bad_request("`sources` must map mids to source names")
    try:
        description = aiortc_internals.parse_sdp(sdp)
    except Exception as exc:  # aiortc's parser raises whatever it trips on
        raise bad_request(f"invalid SDP: {type(exc).__name__}: {exc}") from None
    if not description.media:
        raise bad_request("the offer has no media sections")
    if len(description.media) > MAX_MEDIA_SECTIONS:
        raise bad_request(f"an offer may have at most {MAX_MEDIA_SECTIONS} media sections")

    media: list[OfferedMedia] = []
    has_data = False
    mids: set[str] = set()
    for section in description.media:
        mid = section.rtp.muxId
        if not mid or mid in mids:
            raise bad_request("every media section needs a unique a=mid")
        mids.add(mid)
        if not section.ice.usernameFragment or not section.ice.password:
            raise bad_request(f"media section {mid!r} lacks ICE credentials")
        if section.kind == "application":
            has_data = True
            continue
        if section.kind not in SOURCES_BY_KIND:
            raise bad_request(f"media section {mid!r} has unsupported kind {section.kind!r}")
        if not section.rtcp_mux:
            raise bad_request(f"media section {mid!r} must use rtcp-mux")
        media.append(_offered_media(section, mid, sources.get(mid)))

    sending = any(m.sending for m in media)
    if sending and not grants.publish:
        raise ProtocolError("forbidden", "this token lacks the `publish` grant")
    if has_data and not sending and not grants.data:
        raise ProtocolError("forbidden", "this token lacks the `data` grant")
    return PublishOffer(sdp=sdp, media=media, has_data=has_data)


def _offered_media(section: Any, mid: str, source: str | None) -> OfferedMedia:
    kind = section.kind
    sending = (section.direction or "sendrecv") in SENDING
    codec = aiortc_internals.chosen_codec(kind, section.rtp.codecs)
    if codec is None:
        raise bad_request(f"no usable {kind} codec in media section {mid!r}")
    mime_type = codec.mimeType.lower()
    if sending and mime_type not in FORWARDABLE:
        raise bad_request(f"media section {mid!r} would use {codec.mimeType}; roomwire forwards Opus, VP8 and H.264")
    if source is None:
        source = DEFAULT_SOURCE[kind]
    elif source not in SOURCES_BY_KIND[kind]:
        raise bad_request(f"source {source!r} is not valid for {kind} (mid {mid!r})")
    return OfferedMedia(mid=mid, kind=kind, sending=sending, source=source, mime_type=mime_type)
