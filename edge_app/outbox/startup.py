"""Opening the outbox at startup: check it, and salvage a damaged one into a fresh file.

``open_checked`` runs ``schema.integrity_problem`` before anything writes to the file. A
damaged file is salvaged *beside* it, then swapped in, so that a power cut at any moment loses
nothing:

1. ``<db>.salvage-tmp`` is built from scratch: every readable row of the damaged file
   (``salvage.salvage_into``), seq continuing above the highest seen or reserved, and the
   report kept as ``meta.recovery`` for the owner to announce (``Outbox.recovery``). It is
   made self-contained (rollback journal, no -wal) and fsynced. A crash here leaves the damaged
   file untouched where it was, and the next start begins again.
2. It is renamed ``<db>.salvaged``: from now on it is complete.
3. The damaged file and its -wal/-shm are renamed to ``<db>.corrupt-<UTC time>`` (kept for
   inspection, never modified or deleted), then ``<db>.salvaged`` becomes ``<db>``. A start
   that finds ``<db>.salvaged`` finishes this step first.

If the salvage cannot be written (a full disk), the damaged file is moved aside and a fresh
outbox started as before; its report says so, and ``edge-app outbox salvage`` copies the events
in later.
"""

from __future__ import annotations

__all__ = ["open_checked"]

import contextlib
import json
import logging
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from edge_app.clock import Clock
from edge_app.errors import OutboxError
from edge_app.outbox.recovery import fsync_dir, move_aside, quarantine, quarantine_target
from edge_app.outbox.rowscan import Progress
from edge_app.outbox.salvage import SalvageReport, salvage_into
from edge_app.outbox.schema import CorruptError, integrity_problem, open_db

_log = logging.getLogger(__name__)


def open_checked(
    path: Path, clock: Clock, reserved_seq: int, *, progress: Progress | None = None
) -> sqlite3.Connection:
    """Open the outbox at ``path``, salvaging it first if it is damaged (see the module).

    Returns the connection (the caller closes it). ``reserved_seq`` is the highest seq that
    may have been issued (``SeqReservation``): a salvaged outbox continues above it.
    ``progress`` is called once per page of the damaged file read by a salvage.
    """
    _finish_swap(path)
    problem = integrity_problem(path)
    if problem is None:
        try:
            return open_db(path)
        except CorruptError as exc:  # damage the check did not see, met creating the tables
            problem = str(exc)
    report = _salvage_aside(path, clock.time(), reserved_seq, problem, progress)
    _log.error(
        "outbox %s was damaged (%s): %s; the damaged file is kept at %s; seq continues after %d",
        path,
        problem,
        report.summary(),
        report.kept_at,
        report.last_seq,
    )
    return open_db(path)


def _salvage_aside(
    path: Path, wall: float, reserved_seq: int, problem: str, progress: Progress | None
) -> SalvageReport:
    kept = quarantine_target(path, wall)
    build = path.with_name(path.name + ".salvage-tmp")
    try:
        _remove(build)  # left by a start that died building it: a copy, the original is intact
        conn = open_db(build)
        try:
            report = salvage_into(
                path,
                conn,
                problem=problem,
                kept_at=kept,
                reserved_seq=reserved_seq,
                pending=True,
                progress=progress,
            )
            # One self-contained file, so that renaming it moves everything it holds.
            (mode,) = conn.execute("PRAGMA journal_mode=DELETE").fetchone()
            if mode != "delete":
                raise OutboxError(f"cannot fold the salvaged outbox {build} into one file")
        finally:
            conn.close()
        with build.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(build, _ready(path))
        fsync_dir(path.parent)
    except Exception as exc:
        if not isinstance(exc, OSError | sqlite3.Error | OutboxError):
            # A fault in the salvage itself: report it, but never stop the appliance for it.
            _log.exception("outbox %s: the salvage failed unexpectedly (please report this)", path)
        with contextlib.suppress(OSError):
            _remove(build)
        return _start_fresh(path, wall, reserved_seq, problem, f"{type(exc).__name__}: {exc}")
    _finish_swap(path)
    return report


def _start_fresh(
    path: Path, wall: float, reserved_seq: int, problem: str, error: str
) -> SalvageReport:
    """The salvage could not be written: keep the damaged file aside, start an empty outbox
    whose pending report says so (and where the events are)."""
    kept = quarantine(path, wall)
    report = SalvageReport(
        kept_at=str(kept),
        problem=problem,
        exact=False,
        last_seq=reserved_seq,
        error=(
            f"{error}; its events are still in {kept}: once there is room, stop edge-app and "
            f"run `edge-app outbox --db {path} salvage {kept}`"
        ),
    )
    conn = open_db(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for key, value in (
            ("recovery", json.dumps(report.to_json())),
            ("last_seq", str(reserved_seq)),
        ):
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise OutboxError(
            f"outbox {path}: cannot start a fresh outbox after setting the damaged one aside "
            f"({exc}); free space on its disk and restart"
        ) from exc
    finally:
        conn.close()
    return report


def _ready(path: Path) -> Path:
    return path.with_name(path.name + ".salvaged")


def _finish_swap(path: Path) -> None:
    """If a complete salvage of ``path`` is waiting (step 2 done), set the damaged file aside
    and put the salvaged one in its place (step 3)."""
    ready = _ready(path)
    if not ready.exists():
        return
    move_aside(path, _kept_at(ready) or quarantine_target(path))
    try:
        os.replace(ready, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise OutboxError(
            f"cannot put the salvaged outbox {ready} in place of {path}: {exc}; rename it by "
            "hand and restart"
        ) from exc


def _kept_at(ready: Path) -> Path | None:
    """Where the salvage in ``ready`` said the damaged file would be kept."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(ready))}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'recovery'").fetchone()
        finally:
            conn.close()
        return Path(json.loads(row[0])["kept_at"]) if row else None
    except (sqlite3.Error, ValueError, KeyError, TypeError):
        return None


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
