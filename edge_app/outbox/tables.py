"""``EventTables``: the outbox's open connection and in-memory mirrors of its events table.

The mirrors (count, bytes, leased, leased bytes, last seq) let ``stats()`` and eviction run
without a full scan. Every write happens inside ``transaction``, which restores the mirrors if
it rolls back. Not thread-safe by itself: ``Outbox`` holds its lock around every call. The
owner (``Outbox``) closes ``conn``.
"""

from __future__ import annotations

__all__ = ["EventTables"]

import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from edge_app.errors import OutboxError
from edge_app.outbox.batch import severity_of_rank
from edge_app.outbox.salvage import SalvageReport
from edge_app.outbox.schema import MERGE_DROPS, outbox_error

_log = logging.getLogger(__name__)


class EventTables:
    """The events, drops and meta tables behind ``conn`` (the outbox file at ``path``)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.count = self.bytes = self.leased = self.leased_bytes = self.last_seq = 0
        self.dropped_total: Counter[str] = Counter()
        """Events dropped since opening (evicted, expired, dead-lettered), by severity."""
        self.recovery: SalvageReport | None = None
        """The salvage report in ``meta.recovery``: a recovery not yet announced."""

    def load(self, reserved_seq: int) -> None:
        """Release every lease (a crash between publish and ack means redelivery), put drop
        counts that rode in unacked batches back, fill the mirrors from the tables, and read
        the pending recovery report (``recovery``). ``reserved_seq`` is where seq continues in
        a database without ``last_seq`` (a new one)."""
        with self.transaction("open"):
            released = self.conn.execute(
                "UPDATE events SET lease_id = NULL WHERE lease_id IS NOT NULL"
            ).rowcount
            self.conn.execute(MERGE_DROPS.format(cond="!= ''"))
            self.conn.execute("DELETE FROM drops WHERE lease_id != ''")
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            pending = self.conn.execute("SELECT value FROM meta WHERE key = 'recovery'").fetchone()
            count, size, max_seq = self.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(MAX(seq), 0) FROM events"
            ).fetchone()
        # max() guards a meta row lost to manual editing: seq must still never repeat. A
        # database without last_seq is new: continue past the reservation (a lost database).
        self.last_seq = max(int(row[0]) if row else reserved_seq, int(max_seq))
        self.count, self.bytes = int(count), int(size)
        self.leased = self.leased_bytes = 0
        self.recovery = _report(pending[0]) if pending else None
        if released:
            _log.info(
                "outbox %s: %d events were out in batches at shutdown; they will be sent again",
                self.path,
                released,
            )

    def settle_recovery(self) -> None:
        """Mark the pending recovery as announced (inside the caller's transaction)."""
        self.conn.execute("DELETE FROM meta WHERE key = 'recovery'")

    def delete(self, seqs: list[int]) -> None:
        """Delete events ``seqs`` (not leased) inside a transaction, keeping the mirrors."""
        removed = 0
        for seq in seqs:
            row = self.conn.execute(
                "DELETE FROM events WHERE seq = ? RETURNING bytes", (seq,)
            ).fetchone()
            removed += int(row[0])
        self.count -= len(seqs)
        self.bytes -= removed

    def holding(self, ids: Sequence[str]) -> set[str]:
        """Those of event ``ids`` stored here: waiting, out in a batch, or dead-lettered."""
        # One JSON array parameter: any number of ids, and the events.id index does the work.
        rows = self.conn.execute(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?1))"
            " UNION SELECT id FROM dead_letter WHERE id IN (SELECT value FROM json_each(?1))",
            (json.dumps(list(ids)),),
        )
        return {str(i) for (i,) in rows}

    def count_drops(self, drops: Counter[tuple[str, int]], why: str) -> None:
        """Add ``drops`` ({(rule, severity rank): n}) to the counts the next batch reports."""
        if not drops:
            return
        self.conn.executemany(
            "INSERT INTO drops (rule, severity, lease_id, n) VALUES (?, ?, '', ?)"
            " ON CONFLICT (rule, severity, lease_id) DO UPDATE SET n = n + excluded.n",
            [(rule, severity_of_rank(rank).value, n) for (rule, rank), n in drops.items()],
        )
        for (_, rank), n in drops.items():
            self.dropped_total[severity_of_rank(rank).value] += n
        _log.warning("outbox dropped %d undelivered events: %s", drops.total(), why)

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @contextmanager
    def transaction(self, op: str) -> Iterator[None]:
        """One write transaction; the mirrors are restored if it rolls back. SQLite errors
        come out as ``OutboxError`` naming ``op``."""
        saved = (self.count, self.bytes, self.leased, self.leased_bytes, self.last_seq)
        dropped = self.dropped_total.copy()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            yield
            self.conn.execute("COMMIT")
        except BaseException as exc:
            (self.count, self.bytes, self.leased, self.leased_bytes, self.last_seq) = saved
            self.dropped_total = dropped
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    _log.exception("outbox %s: rollback after a failed %s failed", self.path, op)
            if isinstance(exc, sqlite3.Error):
                raise self.error(op, exc) from exc
            raise

    def error(self, op: str, exc: sqlite3.Error) -> OutboxError:
        """``exc`` from ``op`` as an ``OutboxError`` that says what to do."""
        return outbox_error(self.path, op, exc)


def _report(text: str) -> SalvageReport | None:
    try:
        return SalvageReport.from_json(json.loads(text))
    except (ValueError, TypeError) as exc:
        # The report only informs the cloud; a damaged one must not keep the outbox shut.
        _log.warning("outbox: ignoring an unreadable recovery report (%s)", exc)
        return None
