"""Prometheus metrics of one signaling server (its own registry, so servers never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "roomwire_connections", "Open Socket.IO connections on this node", registry=self.registry
        )
        self.rooms = Gauge("roomwire_rooms", "Rooms with participants", registry=self.registry)
        self.participants = Gauge(
            "roomwire_participants", "Participants in all rooms", registry=self.registry
        )
        self.events_in = Counter(
            "roomwire_events_in", "Client events received", ["event"], registry=self.registry
        )
        self.events_out = Counter(
            "roomwire_events_out", "Events sent to clients", ["event"], registry=self.registry
        )
        self.errors = Counter("roomwire_errors", "Errors answered, by code", ["code"], registry=self.registry)
        self.connections_dropped = Counter(
            "roomwire_connections_dropped",
            "Connections the server closed to protect itself, by reason",
            ["reason"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
