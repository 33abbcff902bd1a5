"""Prometheus metrics of one signaling server (its own registry, so servers never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "LabelledCounter", "Metrics"]


class LabelledCounter:
    """A counter with one label whose children are looked up once each: prometheus_client's
    `labels()` takes a lock and checks its arguments on every call, once per event here."""

    __slots__ = ("_children", "_counter")

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry) -> None:
        self._counter = Counter(name, documentation, [label], registry=registry)
        self._children: dict[str, Counter] = {}

    def labels(self, value: str) -> Counter:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self._counter.labels(value)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "roomwire_connections", "Open Socket.IO connections on this node", registry=self.registry
        )
        self.rooms = Gauge("roomwire_rooms", "Rooms with participants", registry=self.registry)
        self.participants = Gauge("roomwire_participants", "Participants in all rooms", registry=self.registry)
        self.events_in = LabelledCounter("roomwire_events_in", "Client events received", "event", self.registry)
        self.events_out = LabelledCounter("roomwire_events_out", "Events sent to clients", "event", self.registry)
        self.errors = LabelledCounter("roomwire_errors", "Errors answered, by code", "code", self.registry)
        self.connections_dropped = LabelledCounter(
            "roomwire_connections_dropped",
            "Connections the server closed to protect itself, by reason",
            "reason",
            self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
