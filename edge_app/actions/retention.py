"""Local retention: snapshots and clips deleted by age and total size, off the frame loop.

Snapshots (``<snapshots>/<camera>/<YYYY-MM-DD>/<event id>.jpg`` with its ``.clean.jpg`` and
``.crop.jpg`` siblings, and any other ``<event id>.*`` file there) go per event, all files
of an event together: first every event whose newest file is older than ``max_age_s``, then
the oldest until the folder is within ``max_bytes``. An event whose ``pending`` answer says
it is still in the outbox or its upload still queued keeps its files, even over the budget
(counted and logged). Clips (``<event id>.mp4``) go by the same rule per camera folder,
without that check: no upload waits for them. Files stored encrypted (``<name>.enc``, see
``edge_app.atrest``: ``<event id>.jpg.enc``, ``.clean.jpg.enc``, ``.crop.jpg.enc``,
``<event id>.mp4.enc``) are counted and deleted exactly like the clear ones, with the same
event check, and with the clear files of the same event if both exist.

Ages are file modification times against the system clock. A file modified within
``GRACE_S`` of now is never deleted: its event may be being stored at this moment, so no
answer about it is final yet. Hidden files (``.<name>.<random>.tmp.<ext>``, an atomic
write's temp file) older than that were left by a crash and are removed. A day folder left
empty is removed once its date is before yesterday (UTC), so the snapshot writer never loses
the folder it is writing into.

``Retention`` is one loop with a stop event: a pass at start and then every ``every_s``;
the composition root runs it on its own thread. If ``pending`` fails (the outbox cannot be
read) the pass stops and deletes nothing more: not knowing is never a reason to delete.
"""

from __future__ import annotations

__all__ = ["GRACE_S", "PendingFn", "PruneResult", "Retention", "prune_clips", "prune_snapshots"]

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_app.atrest import SEALED_SUFFIX
from edge_app.config import AppConfig
from edge_app.errors import EdgeAppError

log = logging.getLogger(__name__)

PendingFn = Callable[[Sequence[str]], Collection[str]]
"""Given event ids, the ones whose event is still in the outbox or whose snapshot is still
queued for upload (their files must stay). May raise ``EdgeAppError``."""

GRACE_S = 60.0
"""Seconds after its last modification during which a file is never deleted."""

_CHUNK = 256  # event ids per ``pending`` call: one indexed query each, not one per file
_CLIP_SUFFIXES = (".mp4", ".mp4" + SEALED_SUFFIX)  # a clip in clear, and stored encrypted


@dataclass(frozen=True, slots=True)
class PruneResult:
    """One pass over a folder: ``deleted`` events (snapshots) or clips and the ``freed``
    bytes; ``kept`` ones that were due (age or size) but pending; ``bytes`` left in it."""

    deleted: int = 0
    freed: int = 0
    kept: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _Group:
    """The files of one event in one folder (one clip, or an event's snapshot files)."""

    key: str
    mtime: float = float("-inf")
    size: int = 0
    paths: list[Path] = field(default_factory=list)


def prune_snapshots(
    root: Path,
    *,
    max_bytes: int,
    max_age_s: float,
    pending: PendingFn,
    now: float | None = None,
) -> PruneResult:
    """Apply retention to the snapshot folder ``root`` (see the module docstring); ``now``
    is Unix seconds (default: the system clock). Raises ``EdgeAppError`` from ``pending``
    after deleting only what it had cleared."""
    now = time.time() if now is None else now
    days = [day for camera in _subdirs(root) for day in _subdirs(camera)]
    result = _prune(_scan(days, now, suffixes=None), max_bytes, max_age_s, now, pending)
    cutoff = (datetime.fromtimestamp(now, UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    for day in days:
        if day.name < cutoff:  # "YYYY-MM-DD" names sort by date
            with contextlib.suppress(OSError):  # not empty: left as it is
                day.rmdir()
    return result


def prune_clips(
    folder: Path, *, max_bytes: int, max_age_s: float, now: float | None = None
) -> PruneResult:
    """Apply retention to one camera's clip folder: clips (``*.mp4``, ``*.mp4.enc``) older
    than ``max_age_s`` seconds, then the oldest until at most ``max_bytes``; other files are
    left alone."""
    now = time.time() if now is None else now
    return _prune(_scan([folder], now, suffixes=_CLIP_SUFFIXES), max_bytes, max_age_s, now, None)


def _subdirs(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _scan(folders: Sequence[Path], now: float, *, suffixes: tuple[str, ...] | None) -> list[_Group]:
    """Every event's files in ``folders`` (those ending in one of ``suffixes``; None: all),
    oldest first; removes stale temp files."""
    groups: dict[tuple[Path, str], _Group] = {}
    for folder in folders:
        try:
            with os.scandir(folder) as it:
                entries = [e for e in it if e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted meanwhile
            if entry.name.startswith("."):
                if abs(now - st.st_mtime) > GRACE_S:
                    _unlink(Path(entry.path))  # a crash's leftover temp file
                continue
            if suffixes is not None and not entry.name.endswith(suffixes):
                continue
            key = entry.name.split(".", 1)[0]
            group = groups.setdefault((folder, key), _Group(key))
            group.mtime = max(group.mtime, st.st_mtime)
            group.size += st.st_size
            group.paths.append(Path(entry.path))
    return sorted(groups.values(), key=lambda g: g.mtime)


def _prune(
    groups: list[_Group],
    max_bytes: int,
    max_age_s: float,
    now: float,
    pending: PendingFn | None,
) -> PruneResult:
    total = sum(g.size for g in groups)
    deleted = freed = kept = 0

    def due(group: _Group, total: int) -> bool:
        age = now - group.mtime
        return abs(age) >= GRACE_S and (age > max_age_s or total > max_bytes)

    i = 0
    while i < len(groups) and due(groups[i], total):
        # The next chunk of groups that are due even if every one before them goes: groups
        # are oldest first and totals only shrink, so they stay due whatever ``pending`` says.
        chunk = list(_due_run(groups, i, total, due))
        held = set(pending([g.key for g in chunk])) if pending is not None else set()
        for group in chunk:
            if group.key in held:
                kept += 1
                continue
            for path in group.paths:
                _unlink(path)
            deleted += 1
            freed += group.size
            total -= group.size
        i += len(chunk)
    return PruneResult(deleted, freed, kept, total)


def _due_run(
    groups: list[_Group], start: int, total: int, due: Callable[[_Group, int], bool]
) -> Iterator[_Group]:
    for group in groups[start : start + _CHUNK]:
        if not due(group, total):
            return
        yield group
        total -= group.size


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("retention: cannot delete %s: %s", path, exc.strerror)


class Retention:
    """Prunes the snapshot folder and each camera's clip folder at start and then every
    ``every_s`` seconds until ``stop`` is set. ``run`` is the thread's target (started by the
    composition root); ``run_once`` is one pass."""

    def __init__(
        self,
        snapshots: Path,
        *,
        max_bytes: int,
        max_age_s: float,
        pending: PendingFn,
        clips: Sequence[tuple[Path, int, float]] = (),
        every_s: float,
        stop: threading.Event,
    ) -> None:
        """``clips``: (folder, max bytes, max age in seconds) per camera with clips."""
        self._snapshots = snapshots
        self._max_bytes, self._max_age_s = max_bytes, max_age_s
        self._pending = pending
        self._clips = list(clips)
        self._every_s = every_s
        self._stop = stop
        self._over_budget = False
        self.passes = 0
        self.last: PruneResult | None = None
        """The last pass's snapshot result (None before the first pass ends)."""

    @classmethod
    def for_config(
        cls, config: AppConfig, *, pending: PendingFn, stop: threading.Event
    ) -> Retention:
        """The retention ``config`` asks for: ``snapshots`` and each camera's ``clips``."""
        s = config.snapshots
        return cls(
            config.snapshot_dir,
            max_bytes=int(s.max_mb * 2**20),
            max_age_s=s.max_age_h * 3600,
            pending=pending,
            clips=[
                (config.clip_dir(c.name), int(c.clips.max_mb * 2**20), c.clips.max_age_h * 3600)
                for c in config.cameras
                if c.clips is not None
            ],
            every_s=s.prune_every_s,
            stop=stop,
        )

    def run(self) -> None:
        """Passes until ``stop`` is set (waits on it, so stopping is prompt)."""
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._every_s)

    def run_once(self) -> None:
        """One pass. Failures are logged; a pass that cannot ask ``pending`` deletes no more."""
        try:
            result = prune_snapshots(
                self._snapshots,
                max_bytes=self._max_bytes,
                max_age_s=self._max_age_s,
                pending=self._pending,
            )
        except (EdgeAppError, OSError) as exc:
            log.warning("snapshot retention skipped this pass: %s", exc)
        else:
            self._report(result)
        for folder, max_bytes, max_age_s in self._clips:
            try:
                clips = prune_clips(folder, max_bytes=max_bytes, max_age_s=max_age_s)
            except OSError as exc:
                log.warning("clip retention in %s skipped this pass: %s", folder, exc)
                continue
            if clips.deleted:
                log.info("retention: deleted %d clip(s) in %s", clips.deleted, folder)
        self.passes += 1

    def _report(self, result: PruneResult) -> None:
        self.last = result
        if result.deleted:
            log.info(
                "retention: deleted the snapshots of %d event(s), %d bytes; %d bytes left",
                result.deleted,
                result.freed,
                result.bytes,
            )
        over = result.kept > 0 and result.bytes > self._max_bytes
        if over and not self._over_budget:
            # once per episode, not every pass: warnings are shipped to CloudWatch Logs
            log.warning(
                "snapshots use %d bytes, over snapshots.max_mb, because %d event(s) are not "
                "delivered or uploaded yet; they are kept until they are",
                result.bytes,
                result.kept,
            )
        self._over_budget = over
