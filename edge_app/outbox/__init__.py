"""The durable event outbox (SQLite: enqueue, lease, ack, release, eviction, stats) and the
side lanes for metric aggregates and log lines kept in the same file."""

from edge_app.outbox.lane import LaneRow, LaneStats, LaneStore
from edge_app.outbox.store import Batch, BatchEncoder, Outbox, OutboxStats

__all__ = ["Batch", "BatchEncoder", "LaneRow", "LaneStats", "LaneStore", "Outbox", "OutboxStats"]
