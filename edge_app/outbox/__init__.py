"""The durable outbox: SQLite event store, read-only reader, and lanes for other data."""

from edge_app.outbox.lane import LaneRow, LaneStats, LaneStore
from edge_app.outbox.reader import OutboxReader, OutboxSummary
from edge_app.outbox.store import Batch, BatchEncoder, Outbox, OutboxStats

__all__ = [
    "Batch",
    "BatchEncoder",
    "LaneRow",
    "LaneStats",
    "LaneStore",
    "Outbox",
    "OutboxReader",
    "OutboxStats",
    "OutboxSummary",
]
