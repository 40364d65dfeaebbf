"""The local page's memory of recent events: what was raised, for listing and review.

The outbox forgets an event once it is delivered; the status page must still show it, its
snapshot and its review verdict. ``EventJournal`` keeps the wire form of the last ``max_rows``
events in its own SQLite file (``<data_dir>/journal.db``, 0600, WAL, ``synchronous=NORMAL``:
losing the last few rows to a power cut costs a page listing, never an event, which the
outbox holds durably). With a sealer that seals new items the bodies are encrypted like the
outbox's. Written once per event by ``EventIntake`` (never per frame); read by the HTTP
threads and by ``edge-app review export``. Thread-safe.
"""

from __future__ import annotations

__all__ = ["EventJournal", "JournalRow"]

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from edge_app.atrest import Sealer
from edge_app.domain import Event
from edge_app.errors import EncryptionError, OutboxError
from edge_app.outbox.dbfile import connect
from edge_app.outbox.sealed import open_body, seal_body

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    wall REAL NOT NULL,
    camera TEXT NOT NULL,
    rule TEXT NOT NULL,
    review INTEGER NOT NULL,
    review_of TEXT,
    body NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_review_of ON journal (review_of);
"""
_PRUNE_EVERY = 100  # rows between prunes: one DELETE per hundred events, not per event


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One recorded event: ``n`` (insertion order, the paging cursor) and its wire form."""

    n: int
    doc: dict[str, Any]


class EventJournal:
    """Recent events by insertion order, newest first. ``close()`` (or ``with``) releases it.

    Raises ``OutboxError`` when the file cannot be opened or written.
    """

    def __init__(self, path: Path, *, max_rows: int = 5000, sealer: Sealer | None = None) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.path = path
        self._max = max_rows
        self._sealer = sealer
        self._lock = threading.Lock()
        self._added = 0
        try:
            self._conn = connect(path)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open the event journal {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, event: Event) -> None:
        """Keep a stored event (with its ``seq``); the oldest rows go beyond ``max_rows``."""
        doc = event.to_json()
        body = seal_body(self._sealer, event.id, json.dumps(doc, separators=(",", ":")))
        review_of = doc.get("review_of")
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT OR IGNORE INTO journal (id, wall, camera, rule, review, review_of,"
                    " body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.id,
                        event.wall,
                        event.camera,
                        event.rule,
                        int(event.review),
                        review_of,
                        body,
                    ),
                )
                self._added += 1
                if self._added % _PRUNE_EVERY == 0:
                    self._conn.execute(
                        "DELETE FROM journal WHERE n <= (SELECT MAX(n) FROM journal) - ?",
                        (self._max,),
                    )
            except sqlite3.Error as exc:
                raise OutboxError(f"event journal {self.path}: cannot record: {exc}") from exc

    def page(
        self,
        *,
        camera: str | None = None,
        rule: str | None = None,
        before: int | None = None,
        limit: int = 50,
        pending_review: bool = False,
    ) -> list[JournalRow]:
        """Newest first, at most ``limit``, older than cursor ``before`` (a row's ``n``).
        ``pending_review``: only events with ``review: true`` and no verdict yet."""
        where: list[str] = ["1"]
        args: list[object] = []
        if camera is not None:
            where.append("camera = ?")
            args.append(camera)
        if rule is not None:
            where.append("rule = ?")
            args.append(rule)
        if before is not None:
            where.append("n < ?")
            args.append(before)
        if pending_review:
            where.append(
                "review = 1 AND id NOT IN (SELECT review_of FROM journal"
                " WHERE review_of IS NOT NULL)"
            )
        sql = f"SELECT n, id, body FROM journal WHERE {' AND '.join(where)} ORDER BY n DESC LIMIT ?"  # noqa: S608  # only fixed clauses are joined
        return self._rows(sql, (*args, max(1, min(limit, 500))))

    def get(self, event_id: str) -> JournalRow | None:
        rows = self._rows("SELECT n, id, body FROM journal WHERE id = ?", (event_id,))
        return rows[0] if rows else None

    def verdicts(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The latest review event of each of ``ids`` that has one."""
        rows = self._rows(
            "SELECT n, id, body FROM journal WHERE review_of IN (SELECT value FROM json_each(?))"
            " ORDER BY n",
            (json.dumps(ids),),
        )
        return {str(r.doc["review_of"]): r.doc for r in rows}

    def reviews(self) -> list[JournalRow]:
        """Every review event kept, oldest first (the latest per original wins on export)."""
        return self._rows(
            "SELECT n, id, body FROM journal WHERE review_of IS NOT NULL ORDER BY n", ()
        )

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[JournalRow]:
        with self._lock:
            try:
                found = self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"event journal {self.path}: cannot read: {exc}") from exc
        rows = []
        for n, event_id, body in found:
            try:
                rows.append(JournalRow(int(n), json.loads(open_body(self._sealer, event_id, body))))
            except (EncryptionError, ValueError):
                continue  # sealed with a key we lack, or damaged: the outbox is the record
        return rows
