"""Prometheus metrics of one signaling server (its own registry, so servers never collide)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Count", "EventCounter", "Metrics"]


class Count:
    """One label value's count (and when it was created, which Prometheus' format shows too)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class EventCounter:
    """A counter with one label, kept in plain numbers that the registry reads when scraped.

    prometheus_client's own counter takes a lock on every increment (and its `labels()` checks
    its arguments on every call), once or twice for each event a client sends here. Counting
    happens on the event loop's thread only, so nothing needs the lock.
    """

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry) -> None:
        self._name, self._documentation, self._label = name, documentation, label
        self._counts: dict[str, Count] = {}
        registry.register(self)

    def labels(self, value: str) -> Count:
        count = self._counts.get(value)
        if count is None:
            count = self._counts[value] = Count()
        return count

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in self._counts.items():
            family.add_metric([value], count.value, created=count.created)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "roomwire_connections", "Open Socket.IO connections on this node", registry=self.registry
        )
        self.rooms = Gauge("roomwire_rooms", "Rooms with participants", registry=self.registry)
        self.participants = Gauge("roomwire_participants", "Participants in all rooms", registry=self.registry)
        self.events_in = EventCounter("roomwire_events_in", "Client events received", "event", self.registry)
        self.events_out = EventCounter("roomwire_events_out", "Events sent to clients", "event", self.registry)
        self.errors = EventCounter("roomwire_errors", "Errors answered, by code", "code", self.registry)
        self.connections_dropped = EventCounter(
            "roomwire_connections_dropped",
            "Connections the server closed to protect itself, by reason",
            "reason",
            self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
