"""A read-only view of an outbox file, safe to open while the daemon runs.

Opening ``Outbox`` itself releases every lease (crash recovery), which would make a running
daemon send its in-flight batches twice; operators' commands use this view instead. SQLite's
WAL mode lets it read a consistent snapshot without blocking the writer. Encrypted bodies are
decrypted with the key given to ``bodies``; without it, or with another key, ``bodies`` says so
before it yields anything.

It never writes or creates a file, even in a read-only folder. SQLite's rules for a WAL
database opened read-only: it needs the ``-shm`` file, and creates it and a ``-wal`` if it
can (and leaves them behind), unless opened ``immutable=1``, which ignores any ``-wal``. So:

* a ``-wal`` exists (the daemon runs, or stopped without checkpointing): ``mode=ro``. The
  committed data not yet checkpointed is only in the ``-wal``; SQLite reads it through the
  existing ``-shm`` (read-only if it must, since 3.22).
* no ``-wal`` (the daemon is stopped and checkpointed on close): the database file holds
  everything, and ``mode=ro&immutable=1`` reads it without locks or side files. A daemon
  starting meanwhile writes to a new ``-wal`` only, so this view stays the consistent one it
  opened; a long ``export`` overlapping the daemon's first checkpoint (1,000 pages later) can
  fail with an error and is simply run again.
"""

from __future__ import annotations

__all__ = ["OutboxReader", "OutboxSummary"]

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from edge_app.atrest import Sealer
from edge_app.errors import EncryptionError, OutboxError
from edge_app.outbox.batch import severity_of_rank
from edge_app.outbox.sealed import check_store_key, first_sealed, open_body

_CLI_KEY = (
    "pass the key they were written with: --key FILE (the file encryption.key_file names), "
    "or --config FILE whose encryption section names it"
)


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """What an operator asks first. Bytes are sums of stored JSON bodies, not the file size."""

    depth: int
    bytes: int
    oldest_wall: float | None
    last_seq: int
    leased: int
    by_severity: dict[str, int]
    by_rule: dict[str, int]
    dropped: dict[str, dict[str, int]]
    dead_letter: int = 0
    """Events parked because no publish can carry them (see ``Outbox.dead_letter``)."""
    lanes: dict[str, dict[str, int]] = field(default_factory=dict)
    """Side lanes (snapshots, metrics, logs): {lane: {"rows", "bytes", "dropped"}}; a lane's
    bytes include what its rows name outside the file (the snapshot lane: JPEG sizes), and
    ``dropped`` counts every drop ever (row bound, age, and the outbox byte budget)."""
    encrypted: int = 0
    """Stored events whose body is encrypted (the rest are in clear)."""


class OutboxReader:
    """Read-only access to the outbox at ``path``; the caller closes it (or uses ``with``)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise OutboxError(f"no outbox at {path}; check --db, or outbox.path in the config")
        wal = path.with_name(path.name + "-wal")
        mode = "ro" if wal.exists() else "ro&immutable=1"  # see the module docstring
        try:
            self._conn = sqlite3.connect(
                f"file:{quote(str(path))}?mode={mode}", uri=True, timeout=5.0
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {path}: {exc}") from exc
        try:
            self._conn.execute("SELECT 1 FROM events LIMIT 1")
        except sqlite3.Error as exc:
            self._conn.close()
            raise OutboxError(f"cannot read the outbox {path}: {exc}") from exc
        self.path = path
        self.unreadable: list[tuple[int, str]] = []
        """``(seq, why)`` of encrypted bodies ``bodies`` skipped because they do not decrypt
        with the right key (altered, or moved from another row)."""

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def summary(self) -> OutboxSummary:
        """One consistent snapshot of the store's contents."""
        try:
            with self._conn:  # one read transaction: every figure from the same snapshot
                c = self._conn
                depth, size, oldest, leased = c.execute(
                    "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created_wall),"
                    " COUNT(lease_id) FROM events"
                ).fetchone()
                row = c.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
                (max_seq,) = c.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
                (encrypted,) = c.execute(
                    "SELECT COUNT(*) FROM events WHERE typeof(body) = 'blob'"
                ).fetchone()
                by_severity = {
                    severity_of_rank(rank).value: n
                    for rank, n in c.execute(
                        "SELECT severity, COUNT(*) FROM events GROUP BY severity"
                    )
                }
                by_rule = dict(c.execute("SELECT rule, COUNT(*) FROM events GROUP BY rule"))
                dropped: dict[str, dict[str, int]] = {}
                for rule, severity, n in c.execute(
                    "SELECT rule, severity, SUM(n) FROM drops GROUP BY rule, severity"
                ):
                    dropped.setdefault(rule, {})[severity] = int(n)
                # Files written before the dead-letter lane (or any side lane) lack its tables.
                tables = {
                    str(name)
                    for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
                (dead,) = (
                    c.execute("SELECT COUNT(*) FROM dead_letter").fetchone()
                    if "dead_letter" in tables
                    else (0,)
                )
                lanes = _lanes(c, tables)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from exc
        return OutboxSummary(
            depth=int(depth),
            bytes=int(size),
            oldest_wall=None if oldest is None else float(oldest),
            last_seq=max(int(row[0]) if row else 0, int(max_seq)),
            leased=int(leased),
            by_severity=by_severity,
            by_rule=by_rule,
            dropped=dropped,
            dead_letter=int(dead),
            lanes=lanes,
            encrypted=int(encrypted),
        )

    def first_sealed(self) -> int | None:
        """The seq of the oldest encrypted event, or None if every stored body is in clear."""
        try:
            first = first_sealed(self._conn)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from exc
        return None if first is None else first[0]

    def bodies(
        self, limit: int | None = None, *, sealer: Sealer | None = None, chunk: int = 1000
    ) -> Iterator[str]:
        """Stored event bodies (compact JSON) in seq order, oldest first; ``limit`` at most.

        Encrypted ones are decrypted with ``sealer``. ``EncryptionError`` before the first
        body if the store holds encrypted events and ``sealer`` is None or another key; a body
        that does not decrypt with the right key is skipped and listed in ``unreadable``.
        """
        self._check_key(sealer)  # now, not at the first next(): before the caller writes
        return self._bodies(limit, sealer, chunk)

    def _bodies(self, limit: int | None, sealer: Sealer | None, chunk: int) -> Iterator[str]:
        after, left = 0, limit
        while left is None or left > 0:
            n = chunk if left is None else min(chunk, left)
            try:
                rows = self._conn.execute(
                    "SELECT seq, id, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, n),
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from exc
            if not rows:
                return
            for seq, event_id, body in rows:
                try:
                    yield open_body(sealer, str(event_id), body)
                except EncryptionError as exc:
                    self.unreadable.append((int(seq), str(exc)))
            after = int(rows[-1][0])
            if left is not None:
                left -= len(rows)

    def _check_key(self, sealer: Sealer | None) -> None:
        try:
            check_store_key(self._conn, self.path, sealer, how=_CLI_KEY)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from exc


def _lanes(c: sqlite3.Connection, tables: set[str]) -> dict[str, dict[str, int]]:
    lanes: dict[str, dict[str, int]] = {}
    if "lane_rows" in tables:
        columns = {str(r[1]) for r in c.execute("PRAGMA table_info(lane_rows)")}
        # Rows stored before weights were kept (or files without the column) weigh their body.
        query = (
            "SELECT lane, COUNT(*), COALESCE(SUM(COALESCE(weight, LENGTH(body))), 0)"
            " FROM lane_rows GROUP BY lane"
            if "weight" in columns
            else "SELECT lane, COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM lane_rows"
            " GROUP BY lane"
        )
        for lane, rows, size in c.execute(query):
            lanes[str(lane)] = {"rows": int(rows), "bytes": int(size), "dropped": 0}
    if "lane_drops" in tables:
        for lane, n in c.execute("SELECT lane, n FROM lane_drops"):
            lanes.setdefault(str(lane), {"rows": 0, "bytes": 0, "dropped": 0})["dropped"] = int(n)
    return dict(sorted(lanes.items()))
