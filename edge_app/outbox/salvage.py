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

A plain body (JSON object text, starting with ``{``) must parse, and an event's must name its
row's ``id`` and ``seq``: a body damaged inside an intact page would otherwise break every batch
it rides in. A body in another stored form (bytes, or text in a self-describing sealed form:
encrypted at rest) is copied unchecked; its authentication tag is checked when it is read.

The report counts what was copied and what is known lost. ``exact`` says the loss count is
complete: the events table, or one of its indexes, was read whole (the index names every seq the
table held), and no WAL frame had to be skipped. ``seq_lost`` lists the seq ranges of events lost
(when not exact: every range not accounted for, from 1 up to the last seq issued), so a consumer
can explain its gaps; ``seq_skipped`` names seqs reserved but never issued before the restart.
"""

from __future__ import annotations

__all__ = ["SalvageReport", "salvage_into", "salvaged_key", "seq_ranges"]

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from edge_app.outbox.lane import ensure_lane_tables
from edge_app.outbox.pages import Value
from edge_app.outbox.rowscan import Column, Progress, RowScan, TableRows, columns_of, scan_rows

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

    @property
    def salvaged_rows(self) -> dict[str, int]:
        """Rows copied, by table ("events", "lane_rows"), for metrics."""
        return {"events": self.events, "lane_rows": self.lane_rows}

    @property
    def lost_rows(self) -> dict[str, int]:
        """Rows known lost, by table ("events", "lane_rows"), for metrics."""
        return {"events": self.unreadable, "lane_rows": self.lane_unreadable}

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
    progress: Progress | None = None,
) -> SalvageReport:
    """Copy every readable row of the damaged outbox ``source`` (and its ``-wal``) into
    ``target`` (an open outbox connection in autocommit mode; the caller owns it) in one
    transaction, and return the report. ``kept_at`` is where the damaged file will be kept
    (default: ``source``). ``pending`` also stores the report as ``meta.recovery`` for the
    daemon to announce. ``progress`` is called once per page of ``source`` read (see
    ``rowscan``). Raises ``OSError`` if ``source`` cannot be read and ``sqlite3.Error`` if
    ``target`` cannot be written; nothing is half copied."""
    ensure_lane_tables(target)
    into = {name: columns_of(target, name) for name in TABLES}
    target.execute("BEGIN IMMEDIATE")
    try:
        copy = _Copy(target, into)
        scan = scan_rows(source, into, copy.take, progress=progress)
        report = copy.report(scan, str(kept_at or source), problem, reserved_seq=reserved_seq)
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
    """One salvage's copying, row by row as the scan reads them, inside the caller's
    transaction on ``db`` (the target, whose columns are ``into``)."""

    def __init__(self, db: sqlite3.Connection, into: dict[str, tuple[Column, ...]]) -> None:
        self.db, self.into = db, into
        # Counts, not sets: the scan keeps the seqs taken (``TableRows.seen``), once.
        self.copied = self.present = self.conflicts = 0
        self.lane_rows = self.dead_letters = self.drops = 0
        self.source_last_seq: int | None = None
        self._lanes_held: set[tuple[str, float, bytes]] | None = None
        self._take = {
            "events": self._event,
            "dead_letter": self._dead_letter,
            "lane_rows": self._lane_row,
            "meta": self._meta,
            "drops": self._drop,
            "lane_drops": self._lane_drop,
        }

    def take(self, table: TableRows, rowid: int, values: tuple[Value, ...]) -> bool:
        """``rowscan.Take``: copy one row of ``table``; False if it is damaged."""
        names = {c.name for c in self.into[table.name]}
        row = {
            c.name: rowid if c.rowid else v
            for c, v in zip(table.columns, values, strict=False)
            if c.name in names  # the target's own column names, never the file's other text
        }
        return self._take[table.name](rowid, row)

    def _event(self, seq: int, row: dict[str, Value]) -> bool:
        if not _event_ok(row, seq):
            return False
        row["lease_id"] = None  # leases are void: the batch is sent again
        held = self.db.execute("SELECT id FROM events WHERE seq = ?", (seq,)).fetchone()
        if held is not None and held[0] != row["id"]:
            self.conflicts += 1  # left in the damaged file: its seq is another event's here
        elif (
            held is not None
            or self.db.execute("SELECT 1 FROM events WHERE id = ?", (row["id"],)).fetchone()
        ):
            self.present += 1
        else:
            _insert(self.db, "events", row)
            self.copied += 1
        return True

    def _dead_letter(self, seq: int, row: dict[str, Value]) -> bool:
        if not _body_ok(row.get("body")):
            return False
        if self.db.execute("SELECT 1 FROM dead_letter WHERE seq = ?", (seq,)).fetchone() is None:
            _insert(self.db, "dead_letter", row)
            self.dead_letters += 1
        return True

    def _lane_row(self, rowid: int, row: dict[str, Value]) -> bool:
        body = row.get("body")
        if not _body_ok(body):
            return False
        if self._lanes_held is None:  # what the target holds already (none at startup)
            self._lanes_held = {
                _lane_key(lane, ts, held)
                for lane, ts, held in self.db.execute("SELECT lane, ts, body FROM lane_rows")
            }
        key = _lane_key(row.get("lane"), row.get("ts"), body)
        if key in self._lanes_held:
            return True
        if self.db.execute("SELECT 1 FROM lane_rows WHERE id = ?", (rowid,)).fetchone():
            del row["id"]  # taken in the target: a new id, after its rows
        _insert(self.db, "lane_rows", row)
        self._lanes_held.add(key)
        self.lane_rows += 1
        return True

    def _meta(self, _: int, row: dict[str, Value]) -> bool:
        value = row.get("value")
        if row.get("key") == "last_seq" and isinstance(value, str) and value.isdigit():
            self.source_last_seq = int(value)
        return True

    def _drop(self, _: int, row: dict[str, Value]) -> bool:
        n = row.get("n")
        if type(n) is not int or n < 0:
            return False
        # Counts that rode in a batch never acknowledged are pending again.
        self.db.execute(
            "INSERT INTO drops (rule, severity, lease_id, n) VALUES (?, ?, '', ?)"
            " ON CONFLICT (rule, severity, lease_id) DO UPDATE SET n = n + excluded.n",
            (row.get("rule"), row.get("severity"), n),
        )
        self.drops += n
        return True

    def _lane_drop(self, _: int, row: dict[str, Value]) -> bool:
        n = row.get("n")
        if type(n) is not int or n < 0:
            return False
        self.db.execute(
            "INSERT INTO lane_drops (lane, n) VALUES (?, ?)"
            " ON CONFLICT (lane) DO UPDATE SET n = n + excluded.n",
            (row.get("lane"), n),
        )
        return True

    def report(
        self, scan: RowScan, kept_at: str, problem: str, *, reserved_seq: int
    ) -> SalvageReport:
        """The report of the copy, once ``scan`` is over; sets the target's ``last_seq``."""
        events, lanes = scan.tables["events"], scan.tables["lane_rows"]
        had = events.seen  # copied, present or in conflict: not lost
        known_lost = events.lost()
        row = self.db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        before = int(row[0]) if row else 0
        top = max(max(had, default=0), max(known_lost, default=0))
        last_issued = top if self.source_last_seq is None else self.source_last_seq
        exact = (events.complete or events.index_complete) and not scan.wal.damaged
        lost = seq_ranges(known_lost)
        if not exact:  # name every seq unaccounted for: the cloud has the ones delivered
            lost += _gaps(had, 1, last_issued)
        new_last = max(before, last_issued, top, reserved_seq)
        if new_last > before:
            _set_meta(self.db, "last_seq", str(new_last))
        floor = max(last_issued, before)
        return SalvageReport(
            kept_at=kept_at,
            problem=problem,
            events=self.copied,
            unreadable=len(known_lost),
            exact=exact,
            seq_lost=tuple(_cap(_merge(lost))),
            seq_skipped=(floor + 1, new_last) if new_last > floor else None,
            present=self.present,
            conflicts=self.conflicts,
            lane_rows=self.lane_rows,
            lane_unreadable=len(lanes.lost()),
            dead_letter=self.dead_letters,
            drops=self.drops,
            damaged_pages=tuple(scan.damaged_pages[:20]),
            wal_frames_skipped=len(scan.wal.damaged),
            last_seq=new_last,
        )


def _lane_key(lane: Value, ts: Value, body: Value) -> tuple[str, float, bytes]:
    """A lane row's identity for de-duplication: lane, time and a digest of its body."""
    raw = body if isinstance(body, bytes) else str(body).encode()
    stamp = float(ts) if isinstance(ts, int | float) else 0.0
    return str(lane), stamp, hashlib.blake2b(raw, digest_size=16).digest()


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


def _plain(body: Value) -> Any:
    """A plain (JSON object text) body parsed; ``_SEALED`` for a body in another stored form,
    copied unchecked; None for one that is damaged."""
    if isinstance(body, bytes) or (isinstance(body, str) and not body.startswith("{")):
        return _SEALED  # e.g. encrypted at rest: authenticated when it is read, not here
    if not isinstance(body, str):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


_SEALED = object()


def _body_ok(body: Value) -> bool:
    return _plain(body) is not None


def _event_ok(row: dict[str, Value], seq: int) -> bool:
    event_id = row.get("id")
    if not isinstance(event_id, str) or not event_id or seq < 1:
        return False
    doc = _plain(row.get("body"))
    if doc is _SEALED:
        return True
    return doc is not None and doc.get("id") == event_id and doc.get("seq") == seq


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
