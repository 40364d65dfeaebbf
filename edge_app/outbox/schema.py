"""The outbox file: its tables, opening it (WAL, synchronous=FULL), the integrity check that
runs before anything writes to it, and turning SQLite errors into ``OutboxError`` messages that
say what to do. What happens to a damaged file is ``startup``'s job.
"""

from __future__ import annotations

__all__ = [
    "MERGE_DROPS",
    "CorruptError",
    "errorname",
    "integrity_problem",
    "open_db",
    "outbox_error",
]

import sqlite3
from pathlib import Path
from urllib.parse import quote

from edge_app.errors import OutboxError
from edge_app.outbox.dbfile import connect
from edge_app.outbox.pages import header_page_size
from edge_app.outbox.wal import scan_wal

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
    "SQLITE_CORRUPT": "it is damaged: restart edge-app, which salvages a damaged outbox",
    "SQLITE_NOTADB": "it is not an outbox database: point outbox.path at another file",
}


class CorruptError(OutboxError):
    """The database file is damaged or not a database (salvage it: ``startup``)."""


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


def integrity_problem(path: Path) -> str | None:
    """What is wrong with the outbox file at ``path``, found without writing to it (None: it is
    sound, or there is no file yet): its write-ahead log would lose committed transactions
    (SQLite drops them silently, see ``wal``), or SQLite finds it damaged or not a database.

    Raises ``OutboxError`` for failures that are not damage (permissions, a locked file, I/O).
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutboxError(f"outbox {path}: cannot read it: {exc}; check its permissions") from exc
    wal = scan_wal(path.with_name(path.name + "-wal"), header_page_size(head))
    if wal.problem is not None:
        return wal.problem
    # Read-only: a read-write connection would checkpoint the log into the file on close.
    # Without a log to apply, "immutable" also keeps SQLite from creating -wal/-shm files.
    mode = "mode=ro" if wal.frames else "immutable=1"
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return _damage(path, "open", exc)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.Error as exc:
        return _damage(path, "check", exc)
    finally:
        conn.close()
    if rows == [("ok",)]:
        return None
    lines = [line for (text,) in rows for line in str(text).splitlines() if "***" not in line]
    more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
    return "; ".join(lines[:3]) + more


def _damage(path: Path, op: str, exc: sqlite3.Error) -> str:
    """``exc``'s message if it reports damage; raises ``OutboxError`` for any other failure."""
    if errorname(exc) in {"SQLITE_CORRUPT", "SQLITE_NOTADB"}:
        return str(exc)
    raise outbox_error(path, op, exc) from exc


def open_db(path: Path) -> sqlite3.Connection:
    """Open (creating if missing) the outbox at ``path``: WAL, synchronous=FULL, the tables.
    The caller closes the connection. ``CorruptError`` if SQLite finds the file damaged."""
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
            raise CorruptError(str(exc)) from exc
        raise outbox_error(path, "open", exc) from exc
    if mode != "wal":
        conn.close()
        raise OutboxError(
            f"outbox {path}: the filesystem does not support SQLite WAL mode "
            f"(got {mode!r}); put outbox.path on a local disk"
        )
    return conn
