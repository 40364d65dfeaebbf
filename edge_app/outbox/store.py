"""The durable outbox: events committed to SQLite before anyone calls them raised.

Guarantees (DESIGN.md "Outbox guarantees"):

* ``enqueue`` assigns ``seq = last_seq + 1`` and stores the event in one WAL transaction with
  ``synchronous=FULL``; once it returns, the event survives kill -9 and power loss.
* ``seq`` lives in ``meta.last_seq``, so it survives restarts and never repeats, even after rows
  are acknowledged or evicted; a reservation in ``<db>.seq`` (see ``recovery``) keeps it from
  repeating even when the database itself is lost.
* Opening runs ``PRAGMA quick_check``; a corrupt database is moved aside (never deleted) and a
  fresh one started; ``recovered_from`` then names the moved file, for the owner to report.
* ``lease`` hands out the oldest events not already out; ``ack`` deletes exactly a batch's rows
  (call it only after the PUBACK); ``release`` returns them. Opening the store releases every
  lease, so a crash between publish and ack means redelivery: at-least-once, consumers dedupe
  by ``id``.
* Capacity is bounded in bytes (sum of stored JSON bodies) and age (wall time at enqueue).
  Eviction takes the lowest severity first, then the oldest, never events that are out in a
  batch, and counts drops per (rule, severity); the next batch reports and clears them.

One connection, guarded by a lock, serves the frame thread (``enqueue``) and the drain thread
(``lease``/``ack``/``release``). The owner closes the store (``close()`` or ``with``).
"""

from __future__ import annotations

__all__ = [
    "IOT_CORE_MAX_PAYLOAD_BYTES",
    "Batch",
    "BatchEncoder",
    "Outbox",
    "OutboxStats",
    "severity_of_rank",
]

import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from edge_app.clock import Clock
from edge_app.domain import Event, Severity
from edge_app.errors import OutboxError
from edge_app.ids import new_ulid
from edge_app.outbox.recovery import SeqReservation, quarantine
from edge_app.outbox.timefix import PLAUSIBLE_WALL, ClockWatch, boot_id_for, correct_times

_log = logging.getLogger(__name__)

_COMPACT = (",", ":")
# Eviction order: the severity column stores this rank so "lowest first" is an index scan.
_RANKS: tuple[Severity, ...] = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)
_RANK = {severity: rank for rank, severity in enumerate(_RANKS)}


def severity_of_rank(rank: int) -> Severity:
    """The severity stored as ``rank`` in the events table."""
    return _RANKS[rank]


# Wall stamps before 2020 come from a device whose clock was not set yet; age says nothing then.
_PLAUSIBLE_WALL = PLAUSIBLE_WALL
# Age eviction scans from the oldest row; run it at most this often (monotonic seconds).
_AGE_CHECK_EVERY_S = 1.0
_AGE_SCAN_LIMIT = 10_000
_EVICT_CHUNK = 256
# AWS IoT Core's largest MQTT payload, bytes: an event that cannot fit alone is dead-lettered.
IOT_CORE_MAX_PAYLOAD_BYTES = 131_072

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
_MERGE_DROPS = """
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


class BatchEncoder(Protocol):
    """Builds a batch payload (``edge_app.uplink.encode_batch`` is the one shipped).

    Must join ``bodies`` with one comma and nothing else, so that the payload of ``n`` bodies is
    the empty-batch size plus ``sum(len(body)) + n - 1`` bytes; ``lease`` relies on that to fill
    batches up to a byte limit without encoding them repeatedly.
    """

    def __call__(
        self,
        device: str,
        batch_id: str,
        bodies: Sequence[str],
        dropped: Mapping[str, Mapping[str, int]],
        *,
        first_seq: int | None,
        last_seq: int | None,
    ) -> bytes: ...


@dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """Events leased for one publish. ``events`` are compact JSON bodies in seq order.

    ``payload`` is the complete MQTT payload. ``first_seq``/``last_seq`` are ``None`` for a
    batch that only reports ``dropped`` counts ({rule: {severity: count}}).
    """

    batch_id: str
    first_seq: int | None
    last_seq: int | None
    events: tuple[str, ...]
    dropped: Mapping[str, Mapping[str, int]]
    payload: bytes

    def __len__(self) -> int:
        return len(self.events)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot of the store. Bytes are sums of stored JSON bodies, not file size."""

    depth: int
    bytes: int
    oldest_wall: float | None
    last_seq: int
    leased: int
    leased_bytes: int
    dropped: int

    @property
    def pending(self) -> int:
        """Stored events not out in a batch."""
        return self.depth - self.leased

    @property
    def pending_bytes(self) -> int:
        """Bytes of stored events not out in a batch."""
        return self.bytes - self.leased_bytes


class Outbox:
    """Durable, bounded event store in one SQLite file at ``path`` (created if missing).

    ``max_bytes`` bounds the stored JSON bodies; ``max_age_s`` drops undelivered events older
    than that many seconds (wall clock). ``encoder`` builds batch payloads for ``lease`` (which
    may also be given one per call, as ``DrainLoop`` does); it is ``edge_app.uplink.encode_batch``
    in practice, injected because the outbox may not import the uplink.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        device: str,
        max_bytes: int,
        max_age_s: float,
        encoder: BatchEncoder | None = None,
        boot_id: str | None = None,
    ) -> None:
        """``boot_id`` (default: this boot's, with ``SystemClock``; none with other clocks)
        tags stored events for clock correction (see ``timefix``)."""
        if max_bytes <= 0:
            raise OutboxError(f"outbox max_bytes must be > 0 bytes, got {max_bytes}")
        if not max_age_s > 0:
            raise OutboxError(f"outbox max_age_s must be > 0 seconds, got {max_age_s}")
        self._path = path
        self._clock = clock
        self._device = device
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._encoder = encoder
        self._lock = threading.Lock()
        self._next_age_check = float("-inf")
        self._closed = False
        # Mirrors of the table, kept under the lock so stats() and eviction need no full scan.
        self._count = self._bytes = self._leased = self._leased_bytes = self._last_seq = 0
        self._seqs = SeqReservation(path.with_name(path.name + ".seq"))
        self._boot_id = boot_id_for(clock) if boot_id is None else boot_id
        self._watch = ClockWatch(clock)
        self.times_corrected = 0
        """Events whose UTC time was corrected after a clock step (see ``timefix``)."""
        self.recovered_from: Path | None = None
        """Where a corrupt database found at open was moved (``None``: it was sound)."""
        self._conn = self._open_checked()
        try:
            self._load()
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Close the database; later calls raise ``OutboxError``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
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

    # -- producer side ---------------------------------------------------------------------

    def enqueue(self, event: Event) -> Event:
        """Store ``event`` durably and return it with its ``seq``; the event exists from now on.

        Thread-safe. May evict older/lower-severity events (or this one) to stay within
        capacity; drops are counted for the next batch.
        """
        if event.seq is not None:
            raise OutboxError(
                f"event {event.id} already has seq {event.seq}: enqueue each new event once"
            )
        with self._lock:
            self._check_open()
            self._seqs.ensure(self._last_seq + 1)
            stored = event.with_seq(self._last_seq + 1)
            try:
                body = json.dumps(stored.to_json(), separators=_COMPACT)
            except (TypeError, ValueError) as exc:
                raise OutboxError(
                    f"event {event.id} cannot be encoded as JSON ({exc}): keep snapshot/extra "
                    "values to str, int, float, bool, None, lists and dicts"
                ) from exc
            size = len(body)  # ASCII: json.dumps escapes everything else
            now_mono, now_wall = self._clock.monotonic(), self._clock.time()
            row = (stored.seq, event.id, _RANK[event.severity], event.rule, now_mono, now_wall)
            with self._transaction("enqueue"):
                self._check_clock(now_mono, now_wall)
                self._conn.execute(
                    "INSERT INTO events (seq, id, severity, rule, created_mono, created_wall,"
                    " bytes, body, boot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, size, body, self._boot_id),
                )
                self._set_meta("last_seq", str(stored.seq))
                self._count, self._bytes = self._count + 1, self._bytes + size
                self._last_seq = self._last_seq + 1
                self._evict_over_capacity()
                self._evict_expired(now_mono, now_wall)
            return stored

    # -- drain side ------------------------------------------------------------------------

    def lease(
        self, max_events: int, max_bytes: int, *, encoder: BatchEncoder | None = None
    ) -> Batch | None:
        """The oldest events not out in a batch, as one batch of at most ``max_events`` events
        whose payload is at most ``max_bytes`` bytes; ``None`` when there is nothing to send.

        Pending drop counts ride along (a batch may carry only drops). An event too large to fit
        alone is logged and sent alone anyway. ``encoder`` defaults to the constructor's. The
        caller must ``ack`` or ``release`` the batch.
        """
        if max_events < 1 or max_bytes < 1:
            raise OutboxError(
                f"lease needs max_events >= 1 and max_bytes >= 1 bytes, got "
                f"{max_events} and {max_bytes}"
            )
        with self._lock:
            self._check_open()
            encoder = encoder or self._encoder
            if encoder is None:
                raise OutboxError(
                    "this Outbox was opened without an encoder: pass "
                    "encoder=edge_app.uplink.encode_batch to lease batches"
                )
            with self._transaction("lease"):
                now_mono, now_wall = self._clock.monotonic(), self._clock.time()
                self._check_clock(now_mono, now_wall)
                self._evict_expired(now_mono, now_wall)
                return self._lease_locked(encoder, max_events, max_bytes)

    def ack(self, batch: Batch) -> None:
        """Delete exactly ``batch``'s events and drop counts; call only after its PUBACK."""
        with self._lock:
            self._check_open()
            with self._transaction("ack"):
                sizes = self._conn.execute(
                    "DELETE FROM events WHERE seq BETWEEN ? AND ? AND lease_id = ? RETURNING bytes",
                    (batch.first_seq or 0, batch.last_seq or 0, batch.batch_id),
                ).fetchall()
                self._conn.execute("DELETE FROM drops WHERE lease_id = ?", (batch.batch_id,))
                removed = sum(size for (size,) in sizes)
                self._count -= len(sizes)
                self._bytes -= removed
                self._leased -= len(sizes)
                self._leased_bytes -= removed
        if len(sizes) != len(batch.events):
            # A released batch is leased again under a new id, so a late ack deletes nothing.
            _log.warning(
                "ack of batch %s matched %d of its %d events (it was released meanwhile)",
                batch.batch_id,
                len(sizes),
                len(batch.events),
            )

    def dead_letter(self, batch: Batch, reason: str) -> int:
        """Park ``batch``'s events in the dead-letter lane (kept in the file, never sent again)
        and count them as drops for the next batch; its drop counts go back to pending.

        For an event the broker refuses as malformed on its own: retrying it forever would
        block everything behind it. Returns how many events were parked.
        """
        with self._lock:
            self._check_open()
            with self._transaction("dead_letter"):
                seqs = [
                    int(seq)
                    for (seq,) in self._conn.execute(
                        "SELECT seq FROM events WHERE seq BETWEEN ? AND ? AND lease_id = ?",
                        (batch.first_seq or 0, batch.last_seq or 0, batch.batch_id),
                    )
                ]
                self._conn.execute(_MERGE_DROPS.format(cond="= ?"), (batch.batch_id,))
                self._conn.execute("DELETE FROM drops WHERE lease_id = ?", (batch.batch_id,))
                self._park(seqs, reason)
            return len(seqs)

    def dead_letters(self) -> int:
        """How many events are parked in the dead-letter lane."""
        with self._lock:
            self._check_open()
            try:
                (n,) = self._conn.execute("SELECT COUNT(*) FROM dead_letter").fetchone()
            except sqlite3.Error as exc:
                raise self._error("dead_letters", exc) from exc
            return int(n)

    def release(self, batch: Batch) -> None:
        """Put ``batch``'s events (and drop counts) back, to be leased again (after a failure)."""
        with self._lock:
            self._check_open()
            with self._transaction("release"):
                sizes = self._conn.execute(
                    "UPDATE events SET lease_id = NULL"
                    " WHERE seq BETWEEN ? AND ? AND lease_id = ? RETURNING bytes",
                    (batch.first_seq or 0, batch.last_seq or 0, batch.batch_id),
                ).fetchall()
                self._conn.execute(_MERGE_DROPS.format(cond="= ?"), (batch.batch_id,))
                self._conn.execute("DELETE FROM drops WHERE lease_id = ?", (batch.batch_id,))
                self._leased -= len(sizes)
                self._leased_bytes -= sum(size for (size,) in sizes)
            self._offset = None  # released events may predate a clock step: check them again

    def stats(self) -> OutboxStats:
        """Depth, bytes, oldest event's wall time, last seq, leased events, pending drops."""
        with self._lock:
            self._check_open()
            try:
                oldest = self._conn.execute(
                    "SELECT created_wall FROM events ORDER BY seq LIMIT 1"
                ).fetchone()
                (dropped,) = self._conn.execute("SELECT COALESCE(SUM(n), 0) FROM drops").fetchone()
            except sqlite3.Error as exc:
                raise self._error("stats", exc) from exc
            return OutboxStats(
                depth=self._count,
                bytes=self._bytes,
                oldest_wall=None if oldest is None else float(oldest[0]),
                last_seq=self._last_seq,
                leased=self._leased,
                leased_bytes=self._leased_bytes,
                dropped=int(dropped),
            )

    # -- internals -------------------------------------------------------------------------

    def _open_checked(self) -> sqlite3.Connection:
        """Open, and if the file is damaged, move it aside and open a fresh one."""
        problem: str | None = None
        try:
            conn = self._open()
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
                return conn
            conn.close()
        moved = quarantine(self._path, self._clock.time())
        self.recovered_from = moved
        _log.error(
            "outbox %s is corrupt (%s): moved it aside to %s (kept for analysis) and started a "
            "fresh one; seq continues after %d",
            self._path,
            problem,
            moved,
            self._seqs.reserved,
        )
        return self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(
                f"cannot create the outbox directory {self._path.parent}: {exc}; "
                "check device.data_dir / outbox.path and permissions"
            ) from exc
        try:
            # Autocommit mode: every transaction below is an explicit BEGIN IMMEDIATE/COMMIT.
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
            if "boot_id" not in columns:  # a file written before boot ids were stored
                conn.execute("ALTER TABLE events ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''")
        except sqlite3.Error as exc:
            conn.close()
            if _errorname(exc) in {"SQLITE_CORRUPT", "SQLITE_NOTADB"}:
                raise _CorruptError(str(exc)) from exc
            raise self._error("open", exc) from exc
        if mode != "wal":
            conn.close()
            raise OutboxError(
                f"outbox {self._path}: the filesystem does not support SQLite WAL mode "
                f"(got {mode!r}); put outbox.path on a local disk"
            )
        return conn

    def _load(self) -> None:
        with self._transaction("open"):
            released = self._conn.execute(
                "UPDATE events SET lease_id = NULL WHERE lease_id IS NOT NULL"
            ).rowcount
            self._conn.execute(_MERGE_DROPS.format(cond="!= ''"))
            self._conn.execute("DELETE FROM drops WHERE lease_id != ''")
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            count, size, max_seq = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(MAX(seq), 0) FROM events"
            ).fetchone()
        # max() guards a meta row lost to manual editing: seq must still never repeat. A
        # database without last_seq is new: continue past the reservation (a lost database).
        self._last_seq = max(int(row[0]) if row else self._seqs.reserved, int(max_seq))
        self._count, self._bytes = int(count), int(size)
        self._leased = self._leased_bytes = 0
        if released:
            _log.info(
                "outbox %s: %d events were out in batches at shutdown; they will be sent again",
                self._path,
                released,
            )

    def _lease_locked(self, encoder: BatchEncoder, max_events: int, max_bytes: int) -> Batch | None:
        rows: list[tuple[int, int, str]] = self._conn.execute(
            "SELECT seq, bytes, body FROM events WHERE lease_id IS NULL ORDER BY seq LIMIT ?",
            (max_events,),
        ).fetchall()
        dropped: dict[str, dict[str, int]] = {}
        for rule, severity, n in self._conn.execute(
            "SELECT rule, severity, n FROM drops WHERE lease_id = ''"
        ):
            dropped.setdefault(rule, {})[severity] = int(n)
        if not rows and not dropped:
            return None
        batch_id = new_ulid(self._clock.time())
        taken = rows
        if rows:
            # Upper bound: the real last_seq has at most as many digits as the last candidate's.
            budget = max_bytes - len(
                encoder(
                    self._device, batch_id, (), dropped, first_seq=rows[0][0], last_seq=rows[-1][0]
                )
            )
            used = count = 0
            for _, size, _ in rows:
                used += size + (1 if count else 0)
                if used > budget:
                    break
                count += 1
            if count == 0:
                seq, size, _ = rows[0]
                if size + (max_bytes - budget) > IOT_CORE_MAX_PAYLOAD_BYTES:
                    # No publish can ever carry it (IoT Core refuses payloads over 128 KB):
                    # park it in the dead-letter lane, reported as a drop, instead of
                    # retrying it forever and blocking everything behind it.
                    self._park(
                        [seq],
                        f"{size} bytes, over the {IOT_CORE_MAX_PAYLOAD_BYTES}-byte"
                        " MQTT payload limit",
                    )
                    return self._lease_locked(encoder, max_events, max_bytes)
                _log.warning(
                    "event seq %d is %d bytes, more than a %d-byte batch can hold; sending it "
                    "alone",
                    seq,
                    size,
                    max_bytes,
                )
                count = 1
            taken = rows[:count]
        first_seq = taken[0][0] if taken else None
        last_seq = taken[-1][0] if taken else None
        bodies = tuple(body for _, _, body in taken)
        payload = encoder(
            self._device, batch_id, bodies, dropped, first_seq=first_seq, last_seq=last_seq
        )
        if taken:
            # The taken rows are exactly the unleased rows up to last_seq (oldest first).
            self._conn.execute(
                "UPDATE events SET lease_id = ? WHERE lease_id IS NULL AND seq <= ?",
                (batch_id, last_seq),
            )
        self._conn.execute("UPDATE drops SET lease_id = ? WHERE lease_id = ''", (batch_id,))
        self._leased += len(taken)
        self._leased_bytes += sum(size for _, size, _ in taken)
        return Batch(batch_id, first_seq, last_seq, bodies, dropped, payload)

    def _check_clock(self, now_mono: float, now_wall: float) -> None:
        """After a wall-clock step or sync, correct the times of this boot's stored events."""
        tolerance = self._watch.check(now_mono, now_wall)
        if tolerance is None:
            return
        fixed, delta = correct_times(self._conn, self._boot_id, now_wall - now_mono, tolerance)
        if fixed:
            self._bytes += delta
            self.times_corrected += fixed
            _log.info(
                "wall clock stepped or synchronised: corrected the UTC time of %d stored "
                "event(s) of this boot",
                fixed,
            )

    def _evict_over_capacity(self) -> None:
        drops: Counter[tuple[str, int]] = Counter()
        while self._bytes > self._max_bytes:
            victims = self._conn.execute(
                "SELECT seq, rule, severity, bytes FROM events WHERE lease_id IS NULL"
                " ORDER BY severity, seq LIMIT ?",
                (_EVICT_CHUNK,),
            ).fetchall()
            chosen = []
            excess = self._bytes - self._max_bytes
            for seq, rule, rank, size in victims:
                if excess <= 0:
                    break
                chosen.append(seq)
                drops[(rule, rank)] += 1
                excess -= size
            if not chosen:
                # Everything left is out in batches; exceed the cap until those are acked.
                break
            self._delete(chosen)
        self._count_drops(drops, "the outbox is full (outbox.max_bytes)")

    def _evict_expired(self, now_mono: float, now_wall: float) -> None:
        if now_mono < self._next_age_check:
            return
        self._next_age_check = now_mono + _AGE_CHECK_EVERY_S
        cutoff = now_wall - self._max_age_s
        chosen: list[int] = []
        drops: Counter[tuple[str, int]] = Counter()
        cursor = self._conn.execute(
            "SELECT seq, rule, severity, created_wall FROM events"
            " WHERE lease_id IS NULL ORDER BY seq LIMIT ?",
            (_AGE_SCAN_LIMIT,),
        )
        for seq, rule, rank, wall in cursor:
            if wall < _PLAUSIBLE_WALL:
                continue
            if wall >= cutoff:
                break
            chosen.append(seq)
            drops[(rule, rank)] += 1
        cursor.close()
        if chosen:
            self._delete(chosen)
        self._count_drops(drops, f"older than outbox.max_age ({self._max_age_s:g} s)")

    def _delete(self, seqs: list[int]) -> None:
        removed = 0
        for seq in seqs:
            row = self._conn.execute(
                "DELETE FROM events WHERE seq = ? RETURNING bytes", (seq,)
            ).fetchone()
            removed += int(row[0])
        self._count -= len(seqs)
        self._bytes -= removed

    def _park(self, seqs: list[int], reason: str) -> None:
        """Move events ``seqs`` (leased or not) to the dead-letter lane, inside a transaction."""
        drops: Counter[tuple[str, int]] = Counter()
        now = self._clock.time()
        for seq in seqs:
            row = self._conn.execute(
                "DELETE FROM events WHERE seq = ? RETURNING id, rule, severity, bytes, body,"
                " lease_id",
                (seq,),
            ).fetchone()
            if row is None:
                continue
            event_id, rule, rank, size, body, lease_id = row
            self._conn.execute(
                "INSERT OR REPLACE INTO dead_letter VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, event_id, rule, rank, body, reason, now),
            )
            drops[(rule, rank)] += 1
            self._count -= 1
            self._bytes -= int(size)
            if lease_id is not None:
                self._leased -= 1
                self._leased_bytes -= int(size)
            _log.error(
                "outbox: event %s (seq %d, rule %s) parked in the dead-letter lane: %s; "
                "see `edge-app outbox status`",
                event_id,
                seq,
                rule,
                reason,
            )
        self._count_drops(drops, f"dead-lettered: {reason}")

    def _count_drops(self, drops: Counter[tuple[str, int]], why: str) -> None:
        if not drops:
            return
        self._conn.executemany(
            "INSERT INTO drops (rule, severity, lease_id, n) VALUES (?, ?, '', ?)"
            " ON CONFLICT (rule, severity, lease_id) DO UPDATE SET n = n + excluded.n",
            [(rule, _RANKS[rank].value, n) for (rule, rank), n in drops.items()],
        )
        _log.warning("outbox dropped %d undelivered events: %s", drops.total(), why)

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @contextmanager
    def _transaction(self, op: str) -> Iterator[None]:
        """One write transaction; in-memory counters are restored if it rolls back."""
        saved = (self._count, self._bytes, self._leased, self._leased_bytes, self._last_seq)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            (self._count, self._bytes, self._leased, self._leased_bytes, self._last_seq) = saved
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    _log.exception("outbox %s: rollback after a failed %s failed", self._path, op)
            if isinstance(exc, sqlite3.Error):
                raise self._error(op, exc) from exc
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"outbox {self._path} is closed: open a new Outbox")

    def _error(self, op: str, exc: sqlite3.Error) -> OutboxError:
        name = _errorname(exc)
        if name == "SQLITE_CONSTRAINT" and "events.id" in str(exc):
            advice = "an event with this id is already stored: enqueue each event once"
        else:
            advice = _ADVICE.get(name, "")
        message = f"outbox {self._path}: {op} failed: {exc}"
        return OutboxError(f"{message}; {advice}" if advice else message)


class _CorruptError(Exception):
    """The database file is damaged or not a database (raised only inside ``Outbox``)."""


def _errorname(exc: sqlite3.Error) -> str:
    # Extended codes (SQLITE_IOERR_WRITE, SQLITE_BUSY_SNAPSHOT) share their primary's advice.
    return "_".join(str(getattr(exc, "sqlite_errorname", "")).split("_")[:2])
