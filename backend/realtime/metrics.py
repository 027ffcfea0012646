"""Prometheus metrics of the realtime path (per process)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)


def _le(bound: float) -> str:
    """Return a bucket bound as Prometheus writes it (`+Inf`, `0.005`, `1.0`)."""
    return "+Inf" if bound == math.inf else repr(float(bound))


class DeliveryHistogram:
    """A histogram observed once per delivered event and connection: plain counts, no lock.

    prometheus_client's Histogram takes a lock and walks its buckets on every observation,
    a few microseconds that thousands of streams pay on every event. Only the event loop's
    thread observes; the exposition reads the same name, buckets, count and sum.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        REGISTRY.register(self)

    def observe(self, value: float, times: int = 1) -> None:
        """Count an observation, `times` over (bucket `le` holds values <= its bound)."""
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times

    def collect(self) -> Iterator[Metric]:
        """Yield the histogram for the exposition."""
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self.sum)


class TransportCounter:
    """A counter by transport (`sse`, `ws`), added to with plain integers: prometheus_client's
    Counter takes a lock and looks its labels up on every call, which the fan-out would pay
    per batch. Only the event loop's thread adds; the exposition reads the same name."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name  # without `_total`, which the exposition appends
        self.documentation = documentation
        self.counts = {"sse": 0, "ws": 0}
        REGISTRY.register(self)

    def add(self, transport: str, count: int) -> None:
        """Add `count` for `transport`."""
        self.counts[transport] += count

    def collect(self) -> Iterator[Metric]:
        """Yield the counter for the exposition."""
        family = CounterMetricFamily(self.name, self.documentation, labels=["transport"])
        for transport, count in self.counts.items():
            family.add_metric([transport], float(count))
        yield family


class RedisStatus:
    """`roundtable_redis_up`: 1 while this process hears and rings doorbells over Redis, 0
    while Redis does not answer (events still reach every stream, from PostgreSQL, by the
    catch-up timer); absent when no Redis is configured. Set by the Redis broker."""

    def __init__(self) -> None:
        self.up: bool | None = None
        REGISTRY.register(self)

    def collect(self) -> Iterator[Metric]:
        """Yield the gauge, when Redis is configured."""
        if self.up is not None:
            yield GaugeMetricFamily(
                "roundtable_redis_up",
                "1 while Redis answers this process's doorbells, 0 while it does not (degraded: "
                "streams catch up from PostgreSQL by timer).",
                value=float(self.up),
            )


REDIS_UP = RedisStatus()
OPEN_STREAMS = Gauge("roundtable_open_streams", "Open event streams.", ["transport"])
EVENTS_DELIVERED = TransportCounter("roundtable_events_delivered", "Events handed to connections.")
WRITTEN_DIRECTLY = TransportCounter(
    "roundtable_events_written_directly",
    "Events the fan-out wrote straight onto an idle connection's socket (a subset of delivered).",
)
DOORBELLS = Counter("roundtable_doorbells_received_total", "Doorbells received (room, seq).", ["source"])
DOORBELLS_MISSED = Counter(
    "roundtable_doorbells_missed_total", "Rooms found behind by the catch-up timer: a doorbell was lost."
)
SLOW_CONSUMERS = Counter("roundtable_slow_consumers_closed_total", "Connections closed for falling behind.")
PUBLISH_FAILURES = Counter(
    "roundtable_doorbell_publish_failures_total", "Doorbells that could not be published."
)
DELIVERY_LATENCY = DeliveryHistogram(
    "roundtable_command_to_delivery_seconds",
    "From the event's commit to its write onto a connection's socket, or its hand-off to the "
    "connection's writer when the socket is busy.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DB_POOL_CHECKED_OUT = Gauge("roundtable_db_pool_checked_out", "Database connections in use from the pool.")
GROUP_COMMITS = Counter(
    "roundtable_chat_commits_total",
    "Commits that appended chat messages (several commands' at once when busy).",
)
GROUP_COMMIT_MESSAGES = Counter(
    "roundtable_chat_messages_committed_total", "Chat messages appended by those commits."
)


def count_group_commit(size: int) -> None:
    """Count one commit of `size` chat messages."""
    GROUP_COMMITS.inc()
    GROUP_COMMIT_MESSAGES.inc(size)
