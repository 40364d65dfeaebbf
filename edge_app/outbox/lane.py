"""Side lanes of the outbox file: metric aggregates and log lines waiting to be shipped.

They live in the same SQLite file as the events (one file to back up, one disk budget) but in
their own tables, through their own connection, so the events table and the ``Outbox`` API are
untouched. A lane is a FIFO of ``(ts, body)`` rows: ``add`` commits (WAL, synchronous=FULL),
``peek`` reads the oldest, ``delete`` removes what the cloud accepted. ``drop_older_than``
removes rows the cloud would refuse (CloudWatch: older than 14 days) and counts them, and
``max_rows`` bounds the lane (oldest dropped first, counted too). The owner closes the store.

A row's *weight* (``row_weight``, stored with the row) is its body's length plus, when the body
is a JSON object with an integer ``bytes``, that many bytes: the size of what the row stands
for outside the database (the snapshot lane's rows name a JPEG file and carry its size).
``stats().bytes`` sums weights. A
lane whose rows give way to events under the outbox byte budget is handed to
``Outbox.share_budget``: it implements ``Spill`` (``held_bytes``, ``shed``). Shedding deletes
rows only, never the files they name.

Given a ``clock``, each row also keeps the clock offset (``wall - mono``) and boot id it was
recorded under, and its ``ts`` is corrected when the wall clock is stepped or synchronised
(``timefix.ClockWatch``), before anything is dropped as too old: metric data points recorded
while a board's clock said 2008 go to CloudWatch with their true times, not dropped as stale.
Readers take an item's time from ``LaneRow.ts``, never from its body.
"""

from __future__ import annotations

__all__ = ["LaneRow", "LaneStats", "LaneStore", "ensure_lane_tables", "row_weight"]

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from edge_app.clock import Clock
from edge_app.errors import OutboxError
from edge_app.outbox.dbfile import connect
from edge_app.outbox.timefix import ClockWatch, boot_id_for

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lane_rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lane TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL,
    offset REAL,
    boot_id TEXT,
    weight INTEGER
);
CREATE INDEX IF NOT EXISTS lane_rows_fifo ON lane_rows (lane, id);
CREATE TABLE IF NOT EXISTS lane_drops (lane TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""
# A row's weight in the queries below is COALESCE(weight, LENGTH(body)): rows written before
# weights were stored never carried "bytes", so their body's length is their weight.

_log = logging.getLogger(__name__)


def ensure_lane_tables(conn: sqlite3.Connection) -> None:
    """Create the lane tables in ``conn``'s database if missing, and add the columns files
    written by earlier versions lack. Raises ``sqlite3.Error``."""
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(lane_rows)")}
    for column, kind in (("offset", "REAL"), ("boot_id", "TEXT"), ("weight", "INTEGER")):
        if column not in columns:  # a file written before rows kept these
            conn.execute(f"ALTER TABLE lane_rows ADD COLUMN {column} {kind}")


def row_weight(body: str) -> int:
    """Bytes a lane row holds against the outbox budget: the body's length, plus its ``bytes``
    when the body is a JSON object with an integer ``bytes`` (the snapshot lane's JPEG size)."""
    if '"bytes":' not in body:  # cheap first: metrics and log bodies never parse
        return len(body)
    try:
        doc = json.loads(body)
    except ValueError:
        return len(body)
    extra = doc.get("bytes") if isinstance(doc, dict) else None
    return len(body) + (extra if type(extra) is int and extra > 0 else 0)


@dataclass(frozen=True, slots=True)
class LaneRow:
    """One stored item: row ``id``, its original time ``ts`` (Unix s) and JSON ``body``."""

    id: int
    ts: float
    body: str


@dataclass(frozen=True, slots=True)
class LaneStats:
    """Rows waiting, their weight in bytes (bodies plus the ``bytes`` they name), the oldest
    ``ts`` (None if empty), and drops ever counted (row bound, age and budget alike)."""

    rows: int
    bytes: int
    oldest_ts: float | None
    dropped: int


class LaneStore:
    """The lane ``lane`` ("metrics", "logs") in the SQLite file ``path``. Thread-safe."""

    def __init__(
        self,
        path: Path,
        lane: str,
        *,
        max_rows: int = 1_000_000,
        clock: Clock | None = None,
        boot_id: str | None = None,
    ) -> None:
        """``clock`` enables time correction; ``boot_id`` defaults as ``Outbox``'s does."""
        if not lane.isidentifier():
            raise ValueError(f"lane name must be an identifier like 'metrics', got {lane!r}")
        if max_rows < 1:
            raise ValueError(f"lane max_rows must be >= 1, got {max_rows}")
        self._path = path
        self._lane = lane
        self._max_rows = max_rows
        self._clock = clock
        self._watch = ClockWatch(clock) if clock is not None else None
        self._boot_id = "" if clock is None else boot_id_for(clock) if boot_id is None else boot_id
        self.times_corrected = 0
        # Mirrors of COUNT(*) and SUM(weight) over this lane's rows, so an enqueue that checks
        # the byte budget, or an add that checks max_rows, does not scan a long backlog.
        # None: unknown (after a failed write, or a delete of rows whose weight we do not
        # hold); recomputed on next use.
        self._rows: int | None = None
        self._held: int | None = None
        """Rows whose ``ts`` was corrected after a clock step or sync."""
        self._lock = threading.Lock()
        try:
            self._conn = connect(path)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            ensure_lane_tables(self._conn)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(
                f"cannot open the {lane} lane in {path}: {exc}; check the directory and disk"
            ) from exc

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def add(self, items: Sequence[tuple[float, str]]) -> None:
        """Store ``(ts, body)`` items durably in one transaction; bounded by ``max_rows``."""
        if not items:
            return

        def op() -> None:
            offset = self._retime()
            rows = [
                (self._lane, float(ts), body, offset, self._boot_id, row_weight(body))
                for ts, body in items
            ]
            self._conn.executemany(
                "INSERT INTO lane_rows (lane, ts, body, offset, boot_id, weight)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            if self._held is not None:
                self._held += sum(row[-1] for row in rows)
            if self._rows is not None:
                self._rows += len(rows)
            self._trim()

        with self._lock:
            self._write(op, "add")

    def peek(self, limit: int) -> list[LaneRow]:
        """The oldest ``limit`` rows (by insertion), without removing them."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT id, ts, body FROM lane_rows WHERE lane = ? ORDER BY id LIMIT ?",
                    (self._lane, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self._lane} lane in {self._path}: read failed: {exc}") from exc
        return [LaneRow(int(i), float(t), str(b)) for i, t, b in rows]

    def delete(self, ids: Sequence[int]) -> None:
        """Remove rows that were delivered."""
        if not ids:
            return

        def op() -> None:
            self._conn.executemany("DELETE FROM lane_rows WHERE id = ?", [(i,) for i in ids])
            self._rows = self._held = None

        with self._lock:
            self._write(op, "delete")

    def drop_older_than(self, cutoff_ts: float) -> int:
        """Remove rows with ``ts < cutoff_ts`` (Unix s), count them as dropped; returns how many."""
        dropped = 0

        def op() -> None:
            nonlocal dropped
            self._retime()  # a row's true time decides whether it is too old
            dropped = self._conn.execute(
                "DELETE FROM lane_rows WHERE lane = ? AND ts < ?", (self._lane, cutoff_ts)
            ).rowcount
            self._count_drops(dropped)
            if dropped:
                self._rows = self._held = None

        with self._lock:
            self._write(op, "drop")
        return dropped

    def stats(self) -> LaneStats:
        with self._lock:
            try:
                rows, size, oldest = self._conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(COALESCE(weight, LENGTH(body))), 0), MIN(ts)"
                    " FROM lane_rows"
                    " WHERE lane = ?",
                    (self._lane,),
                ).fetchone()
                drop = self._conn.execute(
                    "SELECT n FROM lane_drops WHERE lane = ?", (self._lane,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self._lane} lane in {self._path}: read failed: {exc}") from exc
        return LaneStats(
            int(rows),
            int(size),
            None if oldest is None else float(oldest),
            int(drop[0] if drop else 0),
        )

    # -- the outbox byte budget (``Spill``) -----------------------------------------------

    def held_bytes(self) -> int:
        """The lane's weight in bytes: what it holds against the outbox byte budget."""
        with self._lock:
            if self._held is not None:
                return self._held
            try:
                (size,) = self._conn.execute(
                    "SELECT COALESCE(SUM(COALESCE(weight, LENGTH(body))), 0) FROM lane_rows"
                    " WHERE lane = ?",
                    (self._lane,),
                ).fetchone()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self._lane} lane in {self._path}: read failed: {exc}") from exc
            self._held = int(size)
            return self._held

    def shed(self, excess: int) -> int:
        """Drop the oldest rows until at least ``excess`` bytes of weight are freed (or the lane
        is empty), counted as dropped; returns the bytes freed. The files rows name stay."""
        freed = shed = 0

        def op() -> None:
            nonlocal freed, shed
            ids: list[int] = []
            cursor = self._conn.execute(
                "SELECT id, COALESCE(weight, LENGTH(body)) FROM lane_rows WHERE lane = ?"
                " ORDER BY id",
                (self._lane,),
            )
            for row_id, weight in cursor:
                if freed >= excess:
                    break
                ids.append(int(row_id))
                freed += int(weight)
            cursor.close()
            self._conn.executemany("DELETE FROM lane_rows WHERE id = ?", [(i,) for i in ids])
            shed = len(ids)
            self._count_drops(shed)
            if self._held is not None:
                self._held -= freed
            if self._rows is not None:
                self._rows -= shed

        if excess <= 0:
            return 0
        with self._lock:
            self._write(op, "shed")
        if shed:
            _log.warning(
                "%s lane: dropped %d row(s) (%d bytes) to keep the outbox within its byte budget",
                self._lane,
                shed,
                freed,
            )
        return freed

    # -- internals -------------------------------------------------------------------------

    def _retime(self) -> float | None:
        """Correct this boot's rows if the clock was stepped or synced (inside the caller's
        transaction); returns the current ``wall - mono`` offset (None without a clock)."""
        if self._clock is None or self._watch is None:
            return None
        mono, wall = self._clock.monotonic(), self._clock.time()
        offset = wall - mono
        tolerance = self._watch.check(mono, wall)
        if tolerance is not None and self._boot_id:
            self.times_corrected += self._conn.execute(
                "UPDATE lane_rows SET ts = ts + (? - offset), offset = ? WHERE lane = ?"
                " AND boot_id = ? AND offset IS NOT NULL AND abs(offset - ?) > ?",
                (offset, offset, self._lane, self._boot_id, offset, tolerance),
            ).rowcount
        return offset

    def _trim(self) -> None:
        if self._rows is None:
            (rows,) = self._conn.execute(
                "SELECT COUNT(*) FROM lane_rows WHERE lane = ?", (self._lane,)
            ).fetchone()
            self._rows = int(rows)
        excess = self._rows - self._max_rows
        if excess > 0:
            self._conn.execute(
                "DELETE FROM lane_rows WHERE id IN (SELECT id FROM lane_rows WHERE lane = ?"
                " ORDER BY id LIMIT ?)",
                (self._lane, excess),
            )
            self._count_drops(excess)
            self._rows -= excess
            self._held = None  # the weights of the rows trimmed are not known here

    def _count_drops(self, n: int) -> None:
        if n:
            self._conn.execute(
                "INSERT INTO lane_drops (lane, n) VALUES (?, ?)"
                " ON CONFLICT (lane) DO UPDATE SET n = n + excluded.n",
                (self._lane, n),
            )

    def _write(self, op: Callable[[], object], what: str) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            op()
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rows = self._held = None  # the mirrors may count what was rolled back
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise OutboxError(
                f"{self._lane} lane in {self._path}: {what} failed: {exc}; "
                "check free disk space and the file's permissions"
            ) from exc
