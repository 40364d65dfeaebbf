"""Outbox self-repair: the seq reservation file, keeping a damaged database aside, and the
event that reports a recovery (see ``startup`` for the salvage itself).

``seq`` must never repeat, even when the database is lost (corrupt file moved aside, SD card
swapped, file deleted by hand). So the highest seq that may have been handed out is also kept
outside the database, in ``<db>.seq``. Writing that file on every event would double the
fsyncs, so seqs are *reserved* in blocks: before a seq beyond the reservation is issued, the
file is rewritten (``edge_app.files.write_atomic``: unique temp file, fsync, rename, fsync of
the directory; mode 0600, never through a symlink) with ``seq + block``.

Durability argument: a seq is issued only after a reservation covering it is on disk, so the
file's value is always >= every seq ever committed to the database (the database itself commits
with synchronous=FULL afterwards). A fresh database therefore continues at ``reserved + 1``;
the cost is a gap of at most ``block`` seqs after a recovery, which the recovery event explains,
and one fsync per ``block`` events in normal operation.
"""

from __future__ import annotations

__all__ = [
    "RECOVERY_RULE",
    "SEQ_BLOCK",
    "SeqReservation",
    "fsync_dir",
    "move_aside",
    "quarantine",
    "quarantine_target",
    "recovery_event",
]

import os
import time
from pathlib import Path

from edge_app.clock import Clock
from edge_app.domain import Event, ModelRef, Phase, Severity
from edge_app.errors import OutboxError
from edge_app.files import read_nofollow, write_atomic
from edge_app.ids import new_ulid
from edge_app.outbox.salvage import SalvageReport

SEQ_BLOCK = 1000
RECOVERY_RULE = "outbox-recovered"
_SIDES = ("", "-wal", "-shm")


class SeqReservation:
    """The highest seq that may have been issued, kept in ``path`` (a small text file)."""

    def __init__(self, path: Path, block: int = SEQ_BLOCK) -> None:
        if block < 1:
            raise ValueError(f"seq reservation block must be >= 1, got {block}")
        self._path, self._block = path, block
        self.reserved = self._read()

    @property
    def path(self) -> Path:
        return self._path

    def _read(self) -> int:
        try:
            return int(read_nofollow(self._path).strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError):
            # An unreadable reservation is not fatal: the database still holds last_seq.
            return 0

    def ensure(self, seq: int) -> None:
        """Make sure ``seq`` is covered by a durable reservation (writes every ``block``)."""
        if seq <= self.reserved:
            return
        value = seq + self._block
        try:
            write_atomic(self._path, f"{value}\n".encode())
        except OSError as exc:
            raise OutboxError(
                f"cannot write the seq reservation {self._path}: {exc}; free space on the "
                "outbox's filesystem or make it writable"
            ) from exc
        self.reserved = value


def fsync_dir(path: Path) -> None:
    """Make renames in directory ``path`` survive a power cut. Raises ``OSError``."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def quarantine_target(db: Path, wall: float | None = None) -> Path:
    """A free name ``<db>.corrupt-<UTC time>[-n]`` beside ``db`` for keeping a damaged file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
    target = db.with_name(f"{db.name}.corrupt-{stamp}")
    n = 1
    while any(target.with_name(target.name + s).exists() for s in _SIDES):
        target = db.with_name(f"{db.name}.corrupt-{stamp}-{n}")
        n += 1
    return target


def move_aside(db: Path, target: Path) -> None:
    """Rename whichever of ``db`` and its -wal/-shm files exist to ``target`` (and its -wal,
    -shm); never overwrites a file (a taken name is an ``OutboxError``), never deletes."""
    for suffix in _SIDES:
        side, dest = db.with_name(db.name + suffix), target.with_name(target.name + suffix)
        if not side.exists():
            continue
        if dest.exists():
            raise OutboxError(
                f"cannot keep the damaged outbox {side} as {dest}: that file exists; move one "
                "of them away by hand (keep both) and restart"
            )
        try:
            side.replace(dest)
        except OSError as exc:
            raise OutboxError(
                f"outbox {db} is damaged and {side} cannot be moved aside: {exc}; move it away "
                "by hand (keep it for analysis) and restart"
            ) from exc


def quarantine(db: Path, wall: float | None = None) -> Path:
    """Rename ``db`` (and its -wal/-shm files) to ``<db>.corrupt-<UTC time>``; never deletes.

    Returns the new path of the database file; ``OutboxError`` if ``db`` is missing.
    """
    if not db.exists():
        raise OutboxError(
            f"outbox {db} is damaged and cannot be moved aside: it is gone; move it away by hand "
            "(keep it for analysis) and restart"
        )
    target = quarantine_target(db, wall)
    move_aside(db, target)
    return target


def recovery_event(device: str, model: ModelRef, report: SalvageReport, clock: Clock) -> Event:
    """The event that tells the cloud the outbox was found damaged, and what was salvaged.

    Its ``extra`` keys (top-level fields of the wire form): ``moved_to`` (the damaged file,
    kept), ``reason``, ``salvaged`` and ``unreadable`` (events), ``loss_exact``, ``seq_lost``
    (ranges ``[first, last]`` of seqs lost with the file, so gaps before this event are
    explained), ``seq_skipped`` (seqs reserved but never issued), ``lane_rows_salvaged``,
    ``lane_rows_unreadable``, ``dead_letter_salvaged``, ``damaged_pages``, and
    ``salvage_error`` when nothing could be copied.
    """
    extra: dict[str, object] = {
        "moved_to": report.kept_at,
        "reason": f"outbox database damaged at startup: {report.problem}",
        "salvaged": report.events,
        "unreadable": report.unreadable,
        "loss_exact": report.exact,
        "seq_lost": [list(r) for r in report.seq_lost],
        "seq_skipped": list(report.seq_skipped) if report.seq_skipped else None,
        "lane_rows_salvaged": report.lane_rows,
        "lane_rows_unreadable": report.lane_unreadable,
        "dead_letter_salvaged": report.dead_letter,
        "damaged_pages": list(report.damaged_pages),
    }
    if report.error:
        extra["salvage_error"] = report.error
    return Event(
        id=new_ulid(clock.time()),
        device=device,
        camera="system",
        rule=RECOVERY_RULE,
        phase=Phase.START,
        severity=Severity.HIGH,
        wall=clock.time(),
        mono=clock.monotonic(),
        label="outbox",
        score=1.0,
        bbox=(0.0, 0.0, 0.0, 0.0),
        model=model,
        extra=extra,
    )
