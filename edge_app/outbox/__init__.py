"""The durable event outbox: SQLite store with enqueue, lease, ack, release, eviction, stats."""

from edge_app.outbox.reader import OutboxReader, OutboxSummary
from edge_app.outbox.recovery import RECOVERY_RULE, SeqReservation, recovery_event
from edge_app.outbox.store import Batch, BatchEncoder, Outbox, OutboxStats

__all__ = [
    "RECOVERY_RULE",
    "Batch",
    "BatchEncoder",
    "Outbox",
    "OutboxReader",
    "OutboxStats",
    "OutboxSummary",
    "SeqReservation",
    "recovery_event",
]
