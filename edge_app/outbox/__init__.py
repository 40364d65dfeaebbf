"""The durable outbox: SQLite event store, read-only reader, and lanes for other data
(the snapshot lane shares the event store's byte budget as its ``Spill``). A damaged store is
salvaged when opened (``SalvageReport``); ``salvage_file`` does the same for a file set aside."""

from edge_app.outbox.lane import LaneRow, LaneStats, LaneStore
from edge_app.outbox.reader import OutboxReader, OutboxSummary
from edge_app.outbox.recovery import RECOVERY_RULE, SeqReservation, recovery_event
from edge_app.outbox.salvage import SalvageReport
from edge_app.outbox.salvage_file import salvage_file
from edge_app.outbox.spill import Spill
from edge_app.outbox.store import Batch, BatchEncoder, Outbox, OutboxStats

__all__ = [
    "RECOVERY_RULE",
    "Batch",
    "BatchEncoder",
    "LaneRow",
    "LaneStats",
    "LaneStore",
    "Outbox",
    "OutboxReader",
    "OutboxStats",
    "OutboxSummary",
    "SalvageReport",
    "SeqReservation",
    "Spill",
    "recovery_event",
    "salvage_file",
]
