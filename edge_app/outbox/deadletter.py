"""The dead-letter lane: events that no publish can ever carry, parked instead of retried.

Parking moves an event's row from ``events`` to ``dead_letter`` (kept for `edge-app outbox
status` and analysis, never sent) and counts it as a drop, so the cloud learns of it.
"""

from __future__ import annotations

__all__ = ["count_dead_letters", "park"]

import logging
import sqlite3
from collections import Counter

from edge_app.outbox.tables import EventTables

_log = logging.getLogger(__name__)


_DELETE = "DELETE FROM events WHERE seq = ? RETURNING id, rule, severity, bytes, body, lease_id"
# Text damaged in place (not UTF-8) cannot be read as text: take its bytes as they are.
_DELETE_RAW = (
    "DELETE FROM events WHERE seq = ? RETURNING CAST(id AS BLOB), CAST(rule AS BLOB),"
    " severity, bytes, CAST(body AS BLOB), lease_id"
)


def park(
    tables: EventTables, seqs: list[int], reason: str, now_wall: float, *, raw: bool = False
) -> None:
    """Move events ``seqs`` (leased or not) to the dead-letter lane, inside a transaction.
    ``now_wall`` (Unix s) is stored as the time they were parked. ``raw``: their text is
    damaged (not UTF-8); the body is kept as the bytes stored, id and rule made readable."""
    drops: Counter[tuple[str, int]] = Counter()
    for seq in seqs:
        row = tables.conn.execute(_DELETE_RAW if raw else _DELETE, (seq,)).fetchone()
        if row is None:
            continue
        event_id, rule, rank, size, body, lease_id = row
        if raw:
            event_id, rule = (bytes(v).decode("utf-8", "replace") for v in (event_id, rule))
        tables.conn.execute(
            "INSERT OR REPLACE INTO dead_letter VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, event_id, rule, rank, body, reason, now_wall),
        )
        drops[(rule, rank)] += 1
        tables.count -= 1
        tables.bytes -= int(size)
        if lease_id is not None:
            tables.leased -= 1
            tables.leased_bytes -= int(size)
        _log.error(
            "outbox: event %s (seq %d, rule %s) parked in the dead-letter lane: %s; "
            "see `edge-app outbox status`",
            event_id,
            seq,
            rule,
            reason,
        )
    tables.count_drops(drops, f"dead-lettered: {reason}")


def count_dead_letters(conn: sqlite3.Connection) -> int:
    """How many events are parked in the dead-letter lane."""
    (n,) = conn.execute("SELECT COUNT(*) FROM dead_letter").fetchone()
    return int(n)
