"""Prometheus metrics of the realtime path (per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_STREAMS = Gauge("roundtable_open_streams", "Open event streams.", ["transport"])
EVENTS_DELIVERED = Counter(
    "roundtable_events_delivered_total", "Events handed to connections.", ["transport"]
)
DOORBELLS = Counter("roundtable_doorbells_received_total", "Doorbells received (room, seq).", ["source"])
DOORBELLS_MISSED = Counter(
    "roundtable_doorbells_missed_total", "Rooms found behind by the catch-up timer: a doorbell was lost."
)
SLOW_CONSUMERS = Counter("roundtable_slow_consumers_closed_total", "Connections closed for falling behind.")
PUBLISH_FAILURES = Counter(
    "roundtable_doorbell_publish_failures_total", "Doorbells that could not be published."
)
DELIVERY_LATENCY = Histogram(
    "roundtable_command_to_delivery_seconds",
    "From the event's commit to its hand-off to a connection's writer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DB_POOL_CHECKED_OUT = Gauge("roundtable_db_pool_checked_out", "Database connections in use from the pool.")
