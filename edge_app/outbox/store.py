"""The durable outbox: events committed to SQLite before anyone calls them raised.

Guarantees (docs/delivery.md):

* ``enqueue`` assigns ``seq = last_seq + 1`` and stores the event in one WAL transaction with
  ``synchronous=FULL``; once it returns, the event survives kill -9 and power loss.
* ``seq`` lives in ``meta.last_seq``, so it survives restarts and never repeats, even after rows
  are acknowledged or evicted; a reservation in ``<db>.seq`` (see ``recovery``) keeps it from
  repeating even when the database itself is lost.
* Opening checks the file before writing to it (``PRAGMA quick_check`` and the WAL's frame
  checksums); a damaged database is salvaged into a fresh one (every readable event keeps its
  ``id`` and ``seq``) and kept aside, never deleted (``startup``). ``recovery`` then holds the
  report, for the owner to announce with ``report_recovery``.
* ``lease`` hands out the oldest events not already out; ``ack`` deletes exactly a batch's rows
  (call it only after the PUBACK); ``release`` returns them. Opening the store releases every
  lease, so a crash between publish and ack means redelivery: at-least-once, consumers dedupe
  by ``id``.
* Capacity is bounded in bytes (sum of stored JSON bodies, plus what a shared ``Spill`` such as
  the snapshot lane holds) and age (wall time at enqueue). The spill is shed first (oldest
  first); then eviction takes the lowest severity first, then the oldest, never events that
  are out in a batch, and counts drops per (rule, severity); the next batch reports and clears
  them. A full disk (SQLITE_FULL) at enqueue empties the spill and tries the event once more.
* Given a ``Sealer`` that seals new items, bodies are stored encrypted (``sealed``: what is and
  is not encrypted); stored bodies are decrypted when a batch is leased, so what is sent is the
  plain batch (TLS protects the wire). A store may mix plain and sealed rows.

One connection, guarded by a lock, serves the frame thread (``enqueue``) and the drain thread
(``lease``/``ack``/``release``). The owner closes the store (``close()`` or ``with``). The
pieces live in their own modules: ``schema`` (open, integrity check, errors), ``tables``
(connection, mirrors, transactions), ``eviction``, ``leasing``, ``deadletter``, ``batch``
(value types), ``sealed`` (bodies at rest).
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

import copy
import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from edge_app.atrest import Sealer
from edge_app.clock import Clock
from edge_app.domain import Event
from edge_app.errors import OutboxError
from edge_app.outbox.batch import (
    IOT_CORE_MAX_PAYLOAD_BYTES,
    RANK,
    Batch,
    BatchEncoder,
    OutboxStats,
    severity_of_rank,
)
from edge_app.outbox.deadletter import count_dead_letters, park
from edge_app.outbox.eviction import evict_expired, evict_over_capacity
from edge_app.outbox.leasing import lease_batch
from edge_app.outbox.recovery import SeqReservation
from edge_app.outbox.rowscan import Progress
from edge_app.outbox.salvage import SalvageReport
from edge_app.outbox.schema import MERGE_DROPS
from edge_app.outbox.sealed import check_store_key, seal_body
from edge_app.outbox.spill import Spill, disk_full, make_room, shed_all_for_disk
from edge_app.outbox.startup import open_checked
from edge_app.outbox.tables import EventTables
from edge_app.outbox.timefix import ClockWatch, boot_id_for, correct_times

_log = logging.getLogger(__name__)

_COMPACT = (",", ":")
# Age eviction scans from the oldest row; run it at most this often (monotonic seconds).
_AGE_CHECK_EVERY_S = 1.0


class Outbox:
    """Durable, bounded event store in one SQLite file at ``path`` (created if missing).

    ``max_bytes`` bounds the stored JSON bodies; ``max_age_s`` drops undelivered events older
    than that many seconds (wall clock). ``encoder`` builds batch payloads for ``lease`` (which
    may also be given one per call, as ``DrainLoop`` does); it is ``edge_app.uplink.encode_batch``
    in practice, injected because the outbox may not import the uplink. ``sealer`` opens
    encrypted bodies and, if it seals new items, encrypts what is enqueued; a store holding
    encrypted bodies that it cannot open (none given, another key) is refused at open with
    ``EncryptionError``, before anything in it is changed.
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
        sealer: Sealer | None = None,
        progress: Progress | None = None,
    ) -> None:
        """``boot_id`` (default: this boot's, with ``SystemClock``; none with other clocks)
        tags stored events for clock correction (see ``timefix``). ``progress`` is called on
        this thread once per page read while a damaged file is salvaged here (seconds for a
        large outbox), e.g. to extend a service manager's start timeout."""
        if max_bytes <= 0:
            raise ValueError(f"outbox max_bytes must be > 0 bytes, got {max_bytes}")
        if not max_age_s > 0:
            raise ValueError(f"outbox max_age_s must be > 0 seconds, got {max_age_s}")
        self._path = path
        self._clock = clock
        self._device = device
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._encoder = encoder
        self._sealer = sealer
        self._lock = threading.Lock()
        self._spill: Spill | None = None
        self._next_age_check = float("-inf")
        self._closed = False
        self._seqs = SeqReservation(path.with_name(path.name + ".seq"))
        self._boot_id = boot_id_for(clock) if boot_id is None else boot_id
        self._watch = ClockWatch(clock)
        self.times_corrected = 0
        """Events whose UTC time was corrected after a clock step (see ``timefix``)."""
        conn = open_checked(path, clock, self._seqs.reserved, progress=progress)
        # The table mirrors, kept under the lock so stats() and eviction need no full scan.
        self._t = EventTables(conn, path)
        try:
            check_store_key(conn, path, sealer)  # before load() releases leases: a write
            self._t.load(self._seqs.reserved)
        except BaseException:
            conn.close()
            raise
        self.recovery: SalvageReport | None = self._t.recovery
        """The salvage of a damaged outbox found when this store was opened (``None``: the
        file was sound, or its salvage was announced before): what was copied, what was lost,
        where the damaged file is kept. The owner announces it once, with ``report_recovery``."""

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def recovered_from(self) -> Path | None:
        """Where a damaged database found at open was kept (``None``: it was sound)."""
        return None if self.recovery is None else Path(self.recovery.kept_at)

    def close(self) -> None:
        """Close the database; later calls raise ``OutboxError``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._t.conn.close()

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

        Thread-safe. To stay within capacity it first sheds the shared spill (the snapshot
        lane, see ``share_budget``), then evicts older/lower-severity events (or this one);
        event drops are counted for the next batch.
        """
        return self._enqueue(event, settles=False)

    def report_recovery(self, event: Event) -> Event:
        """Store ``event`` (``recovery_event(..., self.recovery, ...)``) and mark the pending
        recovery as announced, in one transaction: the cloud learns of it exactly once, even
        across a crash. ``OutboxError`` if there is no pending recovery."""
        if self._t.recovery is None:
            raise OutboxError(f"outbox {self._path} has no recovery to report")
        stored = self._enqueue(event, settles=True)
        self._t.recovery = None
        return stored

    def _enqueue(self, event: Event, *, settles: bool) -> Event:
        if event.seq is not None:
            raise OutboxError(
                f"event {event.id} already has seq {event.seq}: enqueue each new event once"
            )
        with self._lock:
            self._check_open()
            self._seqs.ensure(self._t.last_seq + 1)
            stored = event.with_seq(self._t.last_seq + 1)
            try:
                body = json.dumps(stored.to_json(), separators=_COMPACT)
            except (TypeError, ValueError) as exc:
                raise OutboxError(
                    f"event {event.id} cannot be encoded as JSON ({exc}): keep snapshot/extra "
                    "values to str, int, float, bool, None, lists and dicts"
                ) from exc
            size = len(body)  # ASCII: json.dumps escapes everything else
            stored_body = seal_body(self._sealer, stored.id, body)
            room = make_room(self._spill, self._t.bytes + size, self._max_bytes)
            saved = (copy.copy(self._watch), self.times_corrected)
            try:
                self._insert(stored, stored_body, size, room, settles=settles)
            except OutboxError as exc:
                if not disk_full(exc) or not shed_all_for_disk(self._spill):
                    raise
                self._watch, self.times_corrected = saved  # the correction was rolled back
                # once: if it fails again, the disk is full
                self._insert(stored, stored_body, size, room, settles=settles)
            return stored

    def share_budget(self, spill: Spill) -> None:
        """Count ``spill`` (the snapshot lane) against ``max_bytes``; it gives way first.

        From now on, when events plus ``spill.held_bytes()`` would exceed ``max_bytes``,
        ``spill.shed`` drops its oldest items before any event is evicted, and on a full disk
        (SQLITE_FULL at enqueue) it is emptied and the event tried once more. The owner keeps
        ``spill`` open while this outbox is; call ``fit_budget`` after adding to it.
        """
        with self._lock:
            self._spill = spill

    def fit_budget(self) -> int:
        """Shed the shared spill's oldest items until events plus spill fit in ``max_bytes``
        (call it after adding to the spill; events are never evicted for it). Returns the bytes
        shed; ``OutboxError`` if the spill cannot be written."""
        with self._lock:
            self._check_open()
            if self._spill is None:
                return 0
            excess = self._t.bytes + self._spill.held_bytes() - self._max_bytes
            return self._spill.shed(excess) if excess > 0 else 0

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
            raise ValueError(
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
            with self._t.transaction("lease"):
                now_mono, now_wall = self._clock.monotonic(), self._clock.time()
                self._check_clock(now_mono, now_wall)
                self._evict_expired(now_mono, now_wall)
                return lease_batch(
                    self._t,
                    encoder,
                    self._device,
                    now_wall,
                    max_events=max_events,
                    max_bytes=max_bytes,
                    sealer=self._sealer,
                )

    def ack(self, batch: Batch) -> None:
        """Delete exactly ``batch``'s events and drop counts; call only after its PUBACK."""
        with self._lock:
            self._check_open()
            with self._t.transaction("ack"):
                sizes = self._t.conn.execute(
                    "DELETE FROM events WHERE seq BETWEEN ? AND ? AND lease_id = ? RETURNING bytes",
                    (batch.first_seq or 0, batch.last_seq or 0, batch.batch_id),
                ).fetchall()
                self._t.conn.execute("DELETE FROM drops WHERE lease_id = ?", (batch.batch_id,))
                removed = sum(size for (size,) in sizes)
                self._t.count -= len(sizes)
                self._t.bytes -= removed
                self._t.leased -= len(sizes)
                self._t.leased_bytes -= removed
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
            with self._t.transaction("dead_letter"):
                seqs = [
                    int(seq)
                    for (seq,) in self._t.conn.execute(
                        "SELECT seq FROM events WHERE seq BETWEEN ? AND ? AND lease_id = ?",
                        (batch.first_seq or 0, batch.last_seq or 0, batch.batch_id),
                    )
                ]
                self._t.conn.execute(MERGE_DROPS.format(cond="= ?"), (batch.batch_id,))
                self._t.conn.execute("DELETE FROM drops WHERE lease_id = ?", (batch.batch_id,))
                park(self._t, seqs, reason, self._clock.time())
            return len(seqs)

    def dead_letters(self) -> int:
        """How many events are parked in the dead-letter lane."""
        with self._lock:
            self._check_open()
            try:
                return count_dead_letters(self._t.conn)
            except sqlite3.Error as exc:
                raise self._t.error("dead_letters", exc) from exc

    def release(self, batch: Batch) -> None:
        """Put ``batch``'s events (and drop counts) back, to be leased again (after a failure)."""
        with self._lock:
            self._check_open()
            with self._t.transaction("release"):
                sizes = self._t.conn.execute(
                    "UPDATE events SET lease_id = NULL"
                    " WHERE seq BETWEEN ? AND ? AND lease_id = ? RETURNING bytes",
                    (batch.first_seq or 0, batch.last_seq or 0, batch.batch_id),
                ).fetchall()
                self._t.conn.execute(MERGE_DROPS.format(cond="= ?"), (batch.batch_id,))
                self._t.conn.execute("DELETE FROM drops WHERE lease_id = ?", (batch.batch_id,))
                self._t.leased -= len(sizes)
                self._t.leased_bytes -= sum(size for (size,) in sizes)
            self._watch.recheck()  # released events may predate a clock step: check them again

    def holding(self, ids: Sequence[str]) -> set[str]:
        """Those of event ``ids`` not delivered yet (stored, in a batch or dead-lettered):
        local retention keeps their snapshot files. Thread-safe; one indexed query."""
        with self._lock:
            self._check_open()
            try:
                return self._t.holding(ids)
            except sqlite3.Error as exc:
                raise self._t.error("holding", exc) from exc

    def stats(self) -> OutboxStats:
        """Depth, bytes, oldest event's wall time, last seq, leased events, pending drops."""
        with self._lock:
            self._check_open()
            try:
                oldest = self._t.conn.execute(
                    "SELECT created_wall FROM events ORDER BY seq LIMIT 1"
                ).fetchone()
                (dropped,) = self._t.conn.execute(
                    "SELECT COALESCE(SUM(n), 0) FROM drops"
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._t.error("stats", exc) from exc
            return OutboxStats(
                depth=self._t.count,
                bytes=self._t.bytes,
                oldest_wall=None if oldest is None else float(oldest[0]),
                last_seq=self._t.last_seq,
                leased=self._t.leased,
                leased_bytes=self._t.leased_bytes,
                dropped=int(dropped),
                dropped_total=dict(self._t.dropped_total),
                salvaged=self.recovery.salvaged_rows if self.recovery else {},
                unreadable=self.recovery.lost_rows if self.recovery else {},
            )

    # -- internals -------------------------------------------------------------------------

    def _check_clock(self, now_mono: float, now_wall: float) -> None:
        """After a wall-clock step or sync, correct the times of this boot's stored events."""
        tolerance = self._watch.check(now_mono, now_wall)
        if tolerance is None:
            return
        fixed, delta = correct_times(
            self._t.conn, self._boot_id, now_wall - now_mono, tolerance, sealer=self._sealer
        )
        if fixed:
            self._t.bytes += delta
            self.times_corrected += fixed
            _log.info(
                "wall clock stepped or synchronised: corrected the UTC time of %d stored "
                "event(s) of this boot",
                fixed,
            )

    def _insert(
        self, stored: Event, body: str | bytes, size: int, room: int, *, settles: bool
    ) -> None:
        """Commit ``stored`` (its stored ``body``, ``size`` bytes of JSON in clear), then evict
        events down to ``room`` bytes; ``settles``: it announces the pending recovery, which is
        marked done with it."""
        now_mono, now_wall = self._clock.monotonic(), self._clock.time()
        rank = RANK[stored.severity]
        row = (stored.seq, stored.id, rank, stored.rule, now_mono, now_wall, size, body)
        with self._t.transaction("enqueue"):
            self._check_clock(now_mono, now_wall)
            self._t.conn.execute(
                "INSERT INTO events (seq, id, severity, rule, created_mono, created_wall,"
                " bytes, body, boot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, self._boot_id),
            )
            self._t.set_meta("last_seq", str(stored.seq))
            if settles:
                self._t.settle_recovery()
            self._t.count, self._t.bytes = self._t.count + 1, self._t.bytes + size
            self._t.last_seq = self._t.last_seq + 1
            evict_over_capacity(self._t, room)
            self._evict_expired(now_mono, now_wall)

    def _evict_expired(self, now_mono: float, now_wall: float) -> None:
        if now_mono < self._next_age_check:
            return
        self._next_age_check = now_mono + _AGE_CHECK_EVERY_S
        evict_expired(self._t, now_wall, self._max_age_s)

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"outbox {self._path} is closed: open a new Outbox")
