"""`metrics.Tallies`: per-request metrics added up in the process and written in one go, exactly
as the same `inc()` and `observe()` calls would have written them (this leans on
prometheus-client's histogram internals: it fails the day they change)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared import metrics
from shared.metrics import Tallies

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0005, 0.001, 0.002, 0.01, 0.5, 0.5, 3.0, 0.0]


def exposition(registry: CollectorRegistry) -> list[str]:
    # `_created` samples tell when each child was made, not what it counted.
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if not line.startswith("#") and "_created" not in line]


def test_a_flush_writes_what_the_same_calls_would_have_written() -> None:
    tallied, direct = CollectorRegistry(), CollectorRegistry()
    pairs = [
        (
            Counter("requests_total", "r", ["route"], registry=registry),
            Histogram("duration_seconds", "d", ["route"], buckets=BUCKETS, registry=registry),
        )
        for registry in (tallied, direct)
    ]
    tallies = Tallies()
    for value in VALUES:
        tallies.count(pairs[0][0].labels("/a"))
        tallies.observe(pairs[0][1].labels("/a"), value)
        pairs[1][0].labels("/a").inc()
        pairs[1][1].labels("/a").observe(value)
    tallies.count(pairs[0][0].labels("/b"), 2.5)
    pairs[1][0].labels("/b").inc(2.5)

    before_flush = exposition(tallied)
    tallies.flush()

    assert 'requests_total{route="/a"} 8.0' not in before_flush
    assert exposition(tallied) == exposition(direct)


def test_a_flush_adds_only_what_came_since_the_last_one() -> None:
    registry = CollectorRegistry()
    counter = Counter("answers_total", "a", registry=registry)
    tallies = Tallies()
    tallies.count(counter)
    tallies.flush()
    tallies.flush()
    tallies.count(counter, 2)
    tallies.flush()

    assert "answers_total 3.0" in exposition(registry)


def test_requests_in_flight_are_written_as_the_gauge_at_each_flush() -> None:
    tallies = Tallies()
    gauge: Gauge = metrics.HTTP_IN_FLIGHT
    tallies.in_flight += 2
    tallies.flush()
    during = gauge._value.get()
    tallies.in_flight -= 2
    tallies.flush()

    assert during == 2
    assert gauge._value.get() == 0
