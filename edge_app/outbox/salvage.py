"""Salvage: every readable row of a damaged outbox copied into a sound one, and the report.

``salvage_into`` reads the damaged file with ``rowscan`` (page by page, never through SQLite,
never writing to it) and copies, in one transaction of the target connection:

* events with their ``seq``, ``id`` and stored bytes as they are (a payload encrypted at rest
  is copied, never re-encoded). Leases are void: whatever was out in a batch is sent again
  (at-least-once; consumers dedupe by ``id``). An event whose ``id`` the target holds is not
  copied again (``present``); one whose ``seq`` the target holds under another id stays in
  the source (``conflicts``).
* the dead-letter lane; side-lane rows (snapshots, metrics, logs) under new row ids in their
  order, skipping rows the target holds already (same lane, time and body); lane drop counters.
* pending drop counts; counts that rode in unacknowledged batches become pending again.
* ``meta.last_seq``: the highest of the target's, the damaged file's, every seq seen and
  ``reserved_seq``, so seq never repeats.

A plain (JSON text) body must parse, and an event's must name its row's ``id`` and ``seq``: a
body damaged inside an intact page would otherwise break every batch it rides in. A body stored
as bytes (encrypted at rest) is copied unchecked; its authentication tag is checked when read.

The report counts what was copied and what is known lost. ``exact`` says the loss count is
complete: the events table, or one of its indexes, was read whole (the index names every seq the
table held), and no WAL frame had to be skipped. ``seq_lost`` lists the seq ranges of events lost
(when not exact: every range not accounted for, from 1 up to the last seq issued), so a consumer
can explain its gaps; ``seq_skipped`` names seqs reserved but never issued before the restart.
"""

from __future__ import annotations

__all__ = ["SalvageReport", "salvage_into", "salvaged_key", "seq_ranges"]

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from edge_app.outbox.lane import ensure_lane_tables
from edge_app.outbox.pages import Value
from edge_app.outbox.rowscan import Column, RowScan, TableRows, columns_of, scan_rows

TABLES = ("events", "dead_letter", "lane_rows", "meta", "drops", "lane_drops")
_MAX_RANGES = 100  # ranges named in a report; more are merged across their smallest gaps


@dataclass(frozen=True, slots=True)
class SalvageReport:
    """What one salvage copied and lost. Counts are rows; seqs are inclusive ``(first, last)``
    ranges. JSON form (``to_json``): the same names, ranges as lists."""

    kept_at: str
    """The damaged file, kept for inspection (never modified, never deleted)."""
    problem: str
    """What was found wrong with it."""
    events: int = 0
    unreadable: int = 0
    """Events known to have been stored that could not be read (all of them if ``exact``)."""
    exact: bool = True
    seq_lost: tuple[tuple[int, int], ...] = ()
    seq_skipped: tuple[int, int] | None = None
    present: int = 0
    conflicts: int = 0
    lane_rows: int = 0
    lane_unreadable: int = 0
    dead_letter: int = 0
    drops: int = 0
    """Drop counts carried over (events evicted before the damage, still to be reported)."""
    damaged_pages: tuple[int, ...] = ()
    """The first damaged pages met (page numbers from 1, as ``sqlite3_analyzer`` counts)."""
    wal_frames_skipped: int = 0
    last_seq: int = 0
    """Where seq continues: the next event stored gets ``last_seq + 1``."""
    error: str = ""
    """Why nothing could be copied (the target could not be written); empty on success."""

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["seq_lost"] = [list(r) for r in self.seq_lost]
        doc["seq_skipped"] = list(self.seq_skipped) if self.seq_skipped else None
        doc["damaged_pages"] = list(self.damaged_pages)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SalvageReport:
        """The inverse of ``to_json``; unknown keys (from a newer version) are ignored."""
        if not isinstance(doc, dict):
            raise TypeError(f"a salvage report is a JSON object, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["seq_lost"] = tuple(tuple(r) for r in values.get("seq_lost", ()))
        skipped = values.get("seq_skipped")
        values["seq_skipped"] = tuple(skipped) if skipped else None
        values["damaged_pages"] = tuple(values.get("damaged_pages", ()))
        return cls(**values)

    def summary(self) -> str:
        """One line for the log and the CLI."""
        if self.error:
            return f"nothing salvaged ({self.error})"
        lost = f"{self.unreadable} unreadable" + ("" if self.exact else " or more")
        parts = [f"salvaged {self.events} event(s), {lost}"]
        if self.seq_lost:
            shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in self.seq_lost[:5])
            more = ", ..." if len(self.seq_lost) > 5 else ""
            parts.append(f"seq lost: {shown}{more}")
        if self.present or self.conflicts:
            parts.append(f"{self.present} already present, {self.conflicts} seq conflict(s)")
        parts.append(f"{self.lane_rows} lane row(s) ({self.lane_unreadable} unreadable)")
        parts.append(f"{self.dead_letter} dead letter(s), {self.drops} pending drop(s)")
        return "; ".join(parts)


def salvage_into(
    source: Path,
    target: sqlite3.Connection,
    *,
    problem: str,
    kept_at: Path | None = None,
    reserved_seq: int = 0,
    pending: bool = False,
) -> SalvageReport:
    """Copy every readable row of the damaged outbox ``source`` (and its ``-wal``) into
    ``target`` (an open outbox connection in autocommit mode; the caller owns it) in one
    transaction, and return the report. ``kept_at`` is where the damaged file will be kept
    (default: ``source``). ``pending`` also stores the report as ``meta.recovery`` for the
    daemon to announce. Raises ``OSError`` if ``source`` cannot be read and ``sqlite3.Error``
    if ``target`` cannot be written; nothing is half copied."""
    ensure_lane_tables(target)
    into = {name: columns_of(target, name) for name in TABLES}
    scan = scan_rows(source, into)
    target.execute("BEGIN IMMEDIATE")
    try:
        report = _Copy(scan, target, into).run(
            str(kept_at or source), problem, reserved_seq=reserved_seq
        )
        if pending:
            _set_meta(target, "recovery", json.dumps(report.to_json()))
        # Remembered so that salvaging the same file again is refused (``salvage_file``).
        _set_meta(target, salvaged_key(Path(report.kept_at)), json.dumps(report.to_json()))
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        raise
    return report


def salvaged_key(source: Path) -> str:
    """The ``meta`` key that records a salvage of the damaged file ``source`` into an outbox."""
    return f"salvaged:{source.resolve()}"


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges covering ``seqs``."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


class _Copy:
    """One salvage's copying, inside the caller's transaction."""

    def __init__(
        self, scan: RowScan, target: sqlite3.Connection, into: dict[str, tuple[Column, ...]]
    ) -> None:
        self.scan, self.db, self.into = scan, target, into

    def run(self, kept_at: str, problem: str, *, reserved_seq: int) -> SalvageReport:
        events = self.scan.tables["events"]
        before = self._last_seq()
        copied, present, conflicts, invalid = self._events(events)
        known_lost = (events.lost() | invalid) - copied - present - conflicts
        issued = self._source_last_seq()
        seen = copied | present | conflicts | known_lost
        last_issued = issued if issued is not None else max(seen, default=0)
        exact = (events.complete or events.index_complete) and not self.scan.wal.damaged
        lost = seq_ranges(known_lost)
        if not exact:
            lost = seq_ranges(known_lost) + _gaps(copied | present | conflicts, 1, last_issued)
        new_last = max(before, last_issued, max(seen, default=0), reserved_seq)
        if new_last > before:
            _set_meta(self.db, "last_seq", str(new_last))
        floor = max(last_issued, before)
        lane_rows, lane_lost = self._lanes(self.scan.tables["lane_rows"])
        return SalvageReport(
            kept_at=kept_at,
            problem=problem,
            events=len(copied),
            unreadable=len(known_lost),
            exact=exact,
            seq_lost=tuple(_cap(_merge(lost))),
            seq_skipped=(floor + 1, new_last) if new_last > floor else None,
            present=len(present),
            conflicts=len(conflicts),
            lane_rows=lane_rows,
            lane_unreadable=lane_lost,
            dead_letter=self._dead_letters(self.scan.tables["dead_letter"]),
            drops=self._drops(),
            damaged_pages=tuple(self.scan.damaged_pages[:20]),
            wal_frames_skipped=len(self.scan.wal.damaged),
            last_seq=new_last,
        )

    def _events(self, table: TableRows) -> tuple[set[int], set[int], set[int], set[int]]:
        copied: set[int] = set()
        present: set[int] = set()
        conflicts: set[int] = set()
        invalid: set[int] = set()
        for seq, row in _rows(table, self.into["events"], "seq"):
            if not _event_ok(row, seq):
                invalid.add(seq)
                continue
            row["lease_id"] = None  # leases are void: the batch is sent again
            held = self.db.execute("SELECT id FROM events WHERE seq = ?", (seq,)).fetchone()
            if held is not None:
                (present if held[0] == row["id"] else conflicts).add(seq)
            elif self.db.execute("SELECT 1 FROM events WHERE id = ?", (row["id"],)).fetchone():
                present.add(seq)
            else:
                _insert(self.db, "events", row)
                copied.add(seq)
        return copied, present, conflicts, invalid

    def _dead_letters(self, table: TableRows) -> int:
        n = 0
        for seq, row in _rows(table, self.into["dead_letter"], "seq"):
            held = self.db.execute("SELECT 1 FROM dead_letter WHERE seq = ?", (seq,)).fetchone()
            if held is None and _body_ok(row.get("body")):
                _insert(self.db, "dead_letter", row)
                n += 1
        return n

    def _lanes(self, table: TableRows) -> tuple[int, int]:
        held = {
            (str(lane), float(ts), body)
            for lane, ts, body in self.db.execute("SELECT lane, ts, body FROM lane_rows")
        }
        taken: set[int] = set()
        bad: set[int] = set()
        for rowid, row in _rows(table, self.into["lane_rows"], "id"):
            key = (str(row.get("lane")), float(row.get("ts") or 0.0), row.get("body"))
            if not _body_ok(row.get("body")):
                bad.add(rowid)
                continue
            taken.add(rowid)
            if key not in held:
                del row["id"]  # the target numbers its own rows; order is kept
                _insert(self.db, "lane_rows", row)
                held.add(key)
        copied = len(taken)
        lost = len((table.lost() | bad) - taken)
        for lane, n in _values(self.scan.tables["lane_drops"], 2):
            if type(n) is int and n > 0:
                self.db.execute(
                    "INSERT INTO lane_drops (lane, n) VALUES (?, ?)"
                    " ON CONFLICT (lane) DO UPDATE SET n = n + excluded.n",
                    (lane, n),
                )
        return copied, lost

    def _drops(self) -> int:
        total = 0
        for rule, severity, _lease, n in _values(self.scan.tables["drops"], 4):
            if type(n) is int and n > 0:
                # Counts that rode in a batch never acknowledged are pending again.
                self.db.execute(
                    "INSERT INTO drops (rule, severity, lease_id, n) VALUES (?, ?, '', ?)"
                    " ON CONFLICT (rule, severity, lease_id) DO UPDATE SET n = n + excluded.n",
                    (rule, severity, n),
                )
                total += n
        return total

    def _last_seq(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        (top,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return max(int(row[0]) if row else 0, int(top))

    def _source_last_seq(self) -> int | None:
        for key, value in _values(self.scan.tables["meta"], 2):
            if key == "last_seq" and isinstance(value, str) and value.isdigit():
                return int(value)
        return None


def _rows(
    table: TableRows, into: tuple[Column, ...], alias: str
) -> Iterable[tuple[int, dict[str, Value]]]:
    """``table``'s rows in rowid order as {column: value} for the target's columns ``into``
    (the damaged file's other columns are dropped), the rowid in column ``alias``."""
    names = [c.name for c in table.columns]
    wanted = {c.name for c in into}
    for rowid in sorted(table.rows):
        row = {k: v for k, v in zip(names, table.rows[rowid], strict=False) if k in wanted}
        row[alias] = rowid
        yield rowid, row


def _values(table: TableRows, width: int) -> Iterable[tuple[Value, ...]]:
    for values in table.rows.values():
        if len(values) >= width:
            yield values[:width]


def _insert(db: sqlite3.Connection, table: str, row: dict[str, Value]) -> None:
    # The table is one of TABLES and the column names are the target's own (``_rows``), never
    # text read from the damaged file.
    names = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join("?" for _ in row)
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))  # noqa: S608


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _body_ok(body: Value) -> bool:
    if isinstance(body, bytes):
        return True  # encrypted at rest: authenticated when decrypted, not here
    if not isinstance(body, str):
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _event_ok(row: dict[str, Value], seq: int) -> bool:
    event_id, body = row.get("id"), row.get("body")
    if not isinstance(event_id, str) or not event_id or seq < 1:
        return False
    if isinstance(body, bytes):
        return True
    if not isinstance(body, str):
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("id") == event_id and doc.get("seq") == seq


def _gaps(have: set[int], first: int, last: int) -> list[tuple[int, int]]:
    """The ranges in ``first..last`` that hold no seq of ``have``."""
    out: list[tuple[int, int]] = []
    at = first
    for seq in sorted(s for s in have if first <= s <= last):
        if seq > at:
            out.append((at, seq - 1))
        at = seq + 1
    if at <= last:
        out.append((at, last))
    return out


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def _cap(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """At most ``_MAX_RANGES`` ranges covering ``ranges`` (merged across the smallest gaps)."""
    if len(ranges) <= _MAX_RANGES:
        return ranges
    gaps = sorted(range(1, len(ranges)), key=lambda i: ranges[i][0] - ranges[i - 1][1])
    cuts = sorted(gaps[-(_MAX_RANGES - 1) :])
    out, start = [], 0
    for cut in [*cuts, len(ranges)]:
        out.append((ranges[start][0], ranges[cut - 1][1]))
        start = cut
    return out
