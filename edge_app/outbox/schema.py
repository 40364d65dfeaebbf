"""The outbox file: its tables, opening it (WAL, synchronous=FULL), the startup integrity check,
and turning SQLite errors into ``OutboxError`` messages that say what to do.

``open_checked`` returns a connection the caller owns (and closes); a corrupt file is moved aside
(never deleted, see ``recovery.quarantine``) and a fresh one opened in its place.
"""

from __future__ import annotations

__all__ = ["MERGE_DROPS", "errorname", "open_checked", "outbox_error"]

import logging
import sqlite3
from pathlib import Path

from edge_app.clock import Clock
from edge_app.errors import OutboxError
from edge_app.outbox.dbfile import connect
from edge_app.outbox.recovery import quarantine

_log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    severity INTEGER NOT NULL,
    rule TEXT NOT NULL,
    created_mono REAL NOT NULL,
    created_wall REAL NOT NULL,
    bytes INTEGER NOT NULL,
    body TEXT NOT NULL,
    lease_id TEXT,
    boot_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_eviction ON events (severity, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS drops (
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    lease_id TEXT NOT NULL DEFAULT '',
    n INTEGER NOT NULL,
    PRIMARY KEY (rule, severity, lease_id)
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity INTEGER NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    parked_wall REAL NOT NULL
);
"""
# Drop counts waiting for a batch have lease_id ''; those riding in a batch carry its id.
MERGE_DROPS = """
INSERT INTO drops (rule, severity, lease_id, n)
SELECT rule, severity, '', SUM(n) FROM drops WHERE lease_id {cond} GROUP BY rule, severity
ON CONFLICT (rule, severity, lease_id) DO UPDATE SET n = n + excluded.n
"""

_ADVICE = {
    "SQLITE_FULL": "the disk is full: free space on it or lower outbox.max_bytes",
    "SQLITE_READONLY": "the file is read-only: check its permissions and the filesystem",
    "SQLITE_CANTOPEN": "cannot open it: check that the directory exists and is writable",
    "SQLITE_PERM": "permission denied: run edge-app as a user that may write the file",
    "SQLITE_BUSY": "another process holds it: run one edge-app per outbox file",
    "SQLITE_LOCKED": "another process holds it: run one edge-app per outbox file",
    "SQLITE_IOERR": "I/O error: check the storage device (worn SD card, unplugged disk)",
    "SQLITE_CORRUPT": "it is damaged: stop edge-app, move the file aside (keep it) and restart",
    "SQLITE_NOTADB": "it is not an outbox database: point outbox.path at another file",
}


class _CorruptError(Exception):
    """The database file is damaged or not a database (raised only inside this module)."""


def errorname(exc: sqlite3.Error) -> str:
    """``exc``'s primary SQLite error name, e.g. ``SQLITE_FULL`` ('' if unknown)."""
    # Extended codes (SQLITE_IOERR_WRITE, SQLITE_BUSY_SNAPSHOT) share their primary's advice.
    return "_".join(str(getattr(exc, "sqlite_errorname", "")).split("_")[:2])


def outbox_error(path: Path, op: str, exc: sqlite3.Error) -> OutboxError:
    """An ``OutboxError`` for ``op`` on the outbox at ``path`` that says what to do about it."""
    name = errorname(exc)
    if name == "SQLITE_CONSTRAINT" and "events.id" in str(exc):
        advice = "an event with this id is already stored: enqueue each event once"
    else:
        advice = _ADVICE.get(name, "")
    message = f"outbox {path}: {op} failed: {exc}"
    return OutboxError(f"{message}; {advice}" if advice else message)


def open_checked(
    path: Path, clock: Clock, reserved_seq: int
) -> tuple[sqlite3.Connection, Path | None]:
    """Open the outbox at ``path``; if the file is damaged, move it aside and open a fresh one.

    Returns the connection (the caller closes it) and where a corrupt file was moved (or None).
    ``reserved_seq`` is only for the log line: seq continues after it in a fresh file.
    """
    problem: str | None = None
    try:
        conn = _open(path)
    except _CorruptError as exc:
        problem = str(exc)
    else:
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                problem = "; ".join(str(r[0]) for r in rows[:5])
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        if problem is None:
            return conn, None
        conn.close()
    moved = quarantine(path, clock.time())
    _log.error(
        "outbox %s is corrupt (%s): moved it aside to %s (kept for analysis) and started a "
        "fresh one; seq continues after %d",
        path,
        problem,
        moved,
        reserved_seq,
    )
    return _open(path), moved


def _open(path: Path) -> sqlite3.Connection:
    try:
        conn = connect(path)
    except OSError as exc:
        raise OutboxError(
            f"cannot create the outbox {path} (0600, in a 0700 folder): {exc}; "
            "check device.data_dir / outbox.path, its permissions and that the filesystem "
            "keeps file modes"
        ) from exc
    except sqlite3.Error as exc:
        raise outbox_error(path, "open", exc) from exc
    try:
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
        if "boot_id" not in columns:  # a file written before boot ids were stored
            conn.execute("ALTER TABLE events ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''")
    except sqlite3.Error as exc:
        conn.close()
        if errorname(exc) in {"SQLITE_CORRUPT", "SQLITE_NOTADB"}:
            raise _CorruptError(str(exc)) from exc
        raise outbox_error(path, "open", exc) from exc
    if mode != "wal":
        conn.close()
        raise OutboxError(
            f"outbox {path}: the filesystem does not support SQLite WAL mode "
            f"(got {mode!r}); put outbox.path on a local disk"
        )
    return conn
