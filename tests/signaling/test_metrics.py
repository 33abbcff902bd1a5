"""signaling/metrics.py: event counters hand out one count per label value, and what they count
is what /metrics renders, in Prometheus' format for counters."""

from __future__ import annotations

from roomwire.signaling.metrics import Metrics


def test_a_label_value_gets_one_count_rendered_as_a_counter() -> None:
    metrics = Metrics()
    join = metrics.events_in.labels("join")
    assert metrics.events_in.labels("join") is join
    assert metrics.events_in.labels("leave") is not join
    for _ in range(3):
        metrics.events_in.labels("join").inc()
    metrics.errors.labels("bad_request").inc(2)
    text = metrics.render().decode()
    assert "# TYPE roomwire_events_in_total counter" in text
    assert 'roomwire_events_in_created{event="join"}' in text
    assert 'roomwire_events_in_total{event="join"} 3.0' in text
    assert 'roomwire_events_in_total{event="leave"} 0.0' in text
    assert 'roomwire_errors_total{code="bad_request"} 2.0' in text
    assert "# HELP roomwire_connections_dropped_total Connections the server closed" in text


def test_two_servers_count_apart() -> None:
    first, second = Metrics(), Metrics()
    first.events_out.labels("presence").inc()
    assert 'roomwire_events_out_total{event="presence"} 1.0' in first.render().decode()
    assert 'roomwire_events_out_total{event="presence"}' not in second.render().decode()
