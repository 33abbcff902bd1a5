"""Prometheus metrics of the media plane (listed in docs/operations.md).

The forward path counts in plain integers (`MediaStats`): a prometheus_client counter takes
a lock per increment, too dear per packet and subscriber. `MediaCollector` turns the
integers, and the SFU's current state, into metric families when /metrics is scraped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

KINDS = ("audio", "video")


@dataclass
class MediaStats:
    forwarded_packets: Counter[str] = field(default_factory=Counter)  # by kind
    forwarded_bytes: Counter[str] = field(default_factory=Counter)  # by kind
    nacks_received: int = 0  # packets subscribers asked for again
    nacks_answered: int = 0  # ... and got from the packet cache
    nacks_sent: int = 0  # packets the SFU asked publishers for again
    unrepaired: int = 0  # packets given up after the retries
    keyframes_requested: int = 0
    plis_sent: int = 0  # after rate limiting
    dropped: Counter[str] = field(default_factory=Counter)  # packets not forwarded, by reason


@dataclass
class MediaGauges:
    published_tracks: Counter[str]  # by kind
    subscriptions: Counter[str]  # by kind
    paused_video: int


class MediaCollector:
    """A custom collector: register it in the server's registry, unregister it at close."""

    def __init__(self, stats: MediaStats, gauges: Callable[[], MediaGauges]) -> None:
        self._stats = stats
        self._gauges = gauges

    def describe(self) -> list[Metric]:
        return []  # the families are only known at collect time; nothing to check up front

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        yield _by_kind("roomwire_media_forwarded_packets", "RTP packets sent to subscribers", stats.forwarded_packets)
        yield _by_kind(
            "roomwire_media_forwarded_bytes", "RTP bytes sent to subscribers (before SRTP)", stats.forwarded_bytes
        )
        for name, text, value in (
            ("nacks_received", "Packets subscribers asked for again (NACK)", stats.nacks_received),
            ("nacks_answered", "NACKed packets resent from the packet cache", stats.nacks_answered),
            ("nacks_sent", "Packets the SFU asked publishers for again (NACK)", stats.nacks_sent),
            ("unrepaired_packets", "Packets lost from publishers and never repaired", stats.unrepaired),
            (
                "keyframes_requested",
                "Keyframe requests (new subscribers, PLI/FIR, unrepaired loss)",
                stats.keyframes_requested,
            ),
            ("plis_sent", "PLIs sent to publishers, after rate limiting", stats.plis_sent),
        ):
            yield CounterMetricFamily(f"roomwire_media_{name}", text, value=value)
        dropped = CounterMetricFamily(
            "roomwire_media_dropped_packets", "Packets not forwarded to a subscriber, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        gauges = self._gauges()
        published = GaugeMetricFamily("roomwire_media_published_tracks", "Tracks being published", labels=["kind"])
        subscriptions = GaugeMetricFamily(
            "roomwire_media_subscriptions", "Published tracks sent to subscribers", labels=["kind"]
        )
        for kind in KINDS:
            published.add_metric([kind], gauges.published_tracks[kind])
            subscriptions.add_metric([kind], gauges.subscriptions[kind])
        yield published
        yield subscriptions
        yield GaugeMetricFamily(
            "roomwire_media_paused_video_subscriptions",
            "Video subscriptions paused because the subscriber cannot keep up",
            value=gauges.paused_video,
        )


def _by_kind(name: str, text: str, counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, text, labels=["kind"])
    for kind in KINDS:
        family.add_metric([kind], counts[kind])
    return family
