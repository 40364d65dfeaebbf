"""Outbox self-repair: the seq reservation file and moving a corrupt database aside.

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

__all__ = ["RECOVERY_RULE", "SEQ_BLOCK", "SeqReservation", "quarantine", "recovery_event"]

import contextlib
import time
from pathlib import Path

from edge_app.clock import Clock
from edge_app.domain import Event, ModelRef, Phase, Severity
from edge_app.errors import OutboxError
from edge_app.files import read_nofollow, write_atomic
from edge_app.ids import new_ulid

SEQ_BLOCK = 1000
RECOVERY_RULE = "outbox-recovered"


class SeqReservation:
    """The highest seq that may have been issued, kept in ``path`` (a small text file)."""

    def __init__(self, path: Path, block: int = SEQ_BLOCK) -> None:
        if block < 1:
            raise OutboxError(f"seq reservation block must be >= 1, got {block}")
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


def quarantine(db: Path, wall: float | None = None) -> Path:
    """Rename ``db`` (and its -wal/-shm files) to ``<db>.corrupt-<UTC time>``; never deletes.

    Returns the new path of the database file.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
    target = db.with_name(f"{db.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = db.with_name(f"{db.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        db.replace(target)
    except OSError as exc:
        raise OutboxError(
            f"outbox {db} is corrupt and cannot be moved aside: {exc}; move it away by hand "
            "(keep it for analysis) and restart"
        ) from exc
    for suffix in ("-wal", "-shm"):
        side = db.with_name(db.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            side.replace(target.with_name(target.name + suffix))
    return target


def recovery_event(device: str, model: ModelRef, moved_to: Path, clock: Clock) -> Event:
    """The event that tells the cloud the outbox was found corrupt and started afresh.

    Undelivered events in the moved file are not sent; ``moved_to`` (an ``extra`` key, so a
    top-level field of the wire form) says where they are
    kept, and the gap in ``seq`` before this event is that file's content (or reserved seqs).
    """
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
        extra={"moved_to": str(moved_to), "reason": "outbox database corrupt at startup"},
    )
