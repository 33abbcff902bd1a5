"""The one seam between signaling and media: signaling knows nothing of aiortc.

A `MediaBackend` (the SFU in `media`) receives every `sfu.<op>` event of a joined participant
and hears when a participant is gone. It talks back through the `MediaSignaling` port that
the signaling server hands it in `start()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from .protocol import Grants


@dataclass(frozen=True)
class MediaSession:
    """Who sent an `sfu.*` event: a joined participant, with its token's grants."""

    room: str
    identity: str
    grants: Grants


class MediaSignaling(Protocol):
    """What the signaling server offers the media backend."""

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The registry /metrics serves: the media backend adds its own metrics to it."""
        ...

    async def send_offer(
        self, room: str, identity: str, sdp: str, timeout: float, extra: dict[str, Any] | None = None
    ) -> str:
        """Emit `sfu.offer {sdp, **extra}` to the participant and return the SDP answer in its ack.

        `extra` carries the SFU's track map (`tracks: [{mid, sid, identity, kind, source}]`).

        Raises ProtocolError: `bad_request` when the participant answers with an error or
        malformed data, `unavailable` when it does not answer in time, `not_found` when it is
        not connected.
        """
        ...

    async def set_tracks(self, room: str, identity: str, tracks: list[dict[str, Any]]) -> None:
        """Publish the participant's current tracks (a presence `track` event)."""
        ...


class MediaBackend(Protocol):
    async def start(self, signaling: MediaSignaling) -> None: ...

    async def handle(self, session: MediaSession, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer `sfu.<op>`; the dict is merged into the `{ok: true}` ack.

        Raises ProtocolError for anything the client got wrong.
        """
        ...

    async def participant_left(self, room: str, identity: str) -> None:
        """The participant left, was kicked, replaced or lost: drop its peer connections."""
        ...

    async def close(self) -> None: ...
