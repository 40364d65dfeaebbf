"""The drain loop: leases batches from the outbox, publishes them, acks each on its PUBACK.

Several batches are kept in flight (``window``) so throughput is not one round trip per batch;
each is acked (deleted from the outbox) as soon as its own PUBACK arrives, and released (kept
for redelivery) when its publish fails, times out or the connection drops. Batches go out in
seq order; after a failure the released events are leased again first, so a consumer sees every
seq at least once and mostly in order (a rejected batch may arrive after its successors).

Below the events, an ordered list of side lanes (``LaneSender``: snapshots, then metrics) is
sent whenever no event is waiting; see ``edge_app.uplink.lanes`` for the priority rules.

Timing decisions (how long to hold a small batch, PUBACK timeouts, retry backoff) use the
injected ``Clock``; the thread itself sleeps in real time in short slices so ``stop`` is prompt.
"""

from __future__ import annotations

__all__ = ["MALFORMED_REASON_CODES", "DrainLoop", "DrainStats"]

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from edge_app.clock import Clock
from edge_app.errors import EdgeAppError, PublishRejectedError, UplinkError
from edge_app.outbox import Batch, BatchEncoder, Outbox
from edge_app.uplink.backoff import Backoff
from edge_app.uplink.batcher import DEFAULT_MAX_PAYLOAD_BYTES, encode_batch
from edge_app.uplink.compression import Codec, codec
from edge_app.uplink.lanes import LaneSender, SideLanes
from edge_app.uplink.packing import Outgoing, Packer
from edge_app.uplink.ratelimit import RateLimiter
from edge_app.uplink.transport import PublishHandle, Transport

_log = logging.getLogger(__name__)

# Longest real-time sleep between checks of ``stop``, seconds.
_SLICE_S = 0.1
# With nothing to do, look again this often even without a notify(), seconds.
_IDLE_S = 1.0
# PUBACK reason codes meaning "this payload itself is unacceptable" (MQTT 5 3.4.2.1): payload
# format invalid, packet too large. A batch refused so is split; a lone event is dead-lettered.
# Every other failure code (0x97 quota exceeded, 0x87 not authorized, 0x80, 0x83, ...) says
# nothing against the data: back off and send the same events again.
MALFORMED_REASON_CODES = frozenset({0x99, 0x95})


@dataclass(frozen=True, slots=True)
class DrainStats:
    """Counters since the loop was built. Bytes are wire bytes (compressed, if so) of
    acknowledged batches."""

    batches_sent: int
    events_sent: int
    bytes_sent: int
    publish_failures: int
    in_flight: int
    dead_lettered: int = 0
    lane_publishes: int = 0
    lane_failures: int = 0
    repacked: int = 0
    """Batches leased again smaller because they compressed above ``max_bytes``."""


@dataclass(frozen=True, slots=True)
class _InFlight:
    batch: Batch
    handle: PublishHandle
    deadline: float  # clock.monotonic() by which the PUBACK must have arrived
    wire_bytes: int


class DrainLoop:
    """Moves events from ``outbox`` to ``topic`` over ``transport``, QoS 1, at least once.

    ``max_events``/``max_bytes`` bound one batch (bytes: whole payload as sent, i.e. after
    ``compression``, a ``Codec`` whose content type each publish carries); a backlog smaller than
    a full batch is held up to ``max_wait_s`` seconds to fill up. A PUBACK not received within
    ``ack_timeout_s`` seconds counts as a failure. At most ``window`` batches are unacknowledged
    at once (keep it <= the transport's inflight limit). Failures other than a lost connection
    pause publishing for a ``retry`` backoff delay. ``limiter`` (default: AWS IoT Core's caps,
    100 publishes/s and 512 KB/s) paces publishes; a batch refused as malformed
    (``MALFORMED_REASON_CODES``) is split in halves, and a single refused event is dead-lettered.
    ``lanes`` are the side lanes below the events, highest priority first (snapshots, then
    metrics); each is asked only while no event and no higher lane has anything to send.

    The composition root runs ``run()`` on a thread and stops it with ``stop``; on shutdown,
    ``flush()`` delivers what is left within a time budget (before or after ``stop``). The
    producer calls ``notify()`` after each enqueue to wake the loop at once. ``encoder`` builds
    batch payloads (see ``Outbox.lease``).
    """

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        *,
        topic: str,
        clock: Clock,
        stop: threading.Event,
        max_events: int = 500,
        max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_wait_s: float = 0.5,
        ack_timeout_s: float = 10.0,
        window: int = 10,
        retry: Backoff | None = None,
        encoder: BatchEncoder = encode_batch,
        limiter: RateLimiter | None = None,
        lanes: Sequence[LaneSender] = (),
        compression: Codec | None = None,
    ) -> None:
        if max_events < 1 or max_bytes < 1024 or window < 1:
            raise ValueError(
                "DrainLoop needs max_events >= 1, max_bytes >= 1024 bytes and window >= 1, got "
                f"{max_events}, {max_bytes} and {window}"
            )
        if max_wait_s < 0 or not ack_timeout_s > 0:
            raise ValueError(
                f"DrainLoop needs max_wait_s >= 0 and ack_timeout_s > 0 seconds, got "
                f"{max_wait_s} and {ack_timeout_s}"
            )
        self._outbox = outbox
        self._transport = transport
        self._topic = topic
        self._clock = clock
        self._stop = stop
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_wait_s = max_wait_s
        self._ack_timeout_s = ack_timeout_s
        self._window = window
        self._retry = retry if retry is not None else Backoff(0.5, 30.0)
        self._packer = Packer(outbox, compression or codec("none"), encoder)
        self._limiter = limiter if limiter is not None else RateLimiter(clock=clock)
        self._held: Outgoing | None = None  # leased, waiting for the rate limiter
        self._lanes = SideLanes(
            lanes,
            transport,
            self._limiter,
            ack_timeout_s=ack_timeout_s,
            retry=self._retry.sibling(),
            on_done=self._on_done,
        )
        # After a malformed refusal: lease at most this many events until seq _split_until
        # has been acknowledged.
        self._split_limit: int | None = None
        self._split_until = 0
        self.dead_lettered = 0
        self._wake = threading.Event()
        self._flush_requested = threading.Event()
        self._active = threading.Lock()
        self._inflight: deque[_InFlight] = deque()
        self._retry_at: float | None = None
        self._pending_since: float | None = None
        self.batches_sent = 0
        self.events_sent = 0
        self.bytes_sent = 0
        self.publish_failures = 0
        transport.on_connection_change(self._on_connection_change)

    # -- public ----------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake the loop now (the producer calls this after ``outbox.enqueue``). Thread-safe."""
        self._wake.set()

    def set_batching(self, max_events: int, max_bytes: int, max_wait_s: float) -> None:
        """Change the batch bounds (remote config); the next lease uses them. Thread-safe
        enough: each is one attribute the loop reads per cycle, all validated by the config."""
        self._max_events, self._max_bytes, self._max_wait_s = max_events, max_bytes, max_wait_s

    def stats(self) -> DrainStats:
        """A snapshot of the counters."""
        return DrainStats(
            self.batches_sent,
            self.events_sent,
            self.bytes_sent,
            self.publish_failures,
            len(self._inflight) + self._lanes.in_flight,
            self.dead_lettered,
            self._lanes.sent,
            self._lanes.failures,
            self._packer.repacked,
        )

    def backlog(self) -> bool:
        """True while anything waits for this uplink: stored events (also those in flight) or
        rows of a side lane. Thread-safe; the log shipper yields to it (``app.py``)."""
        return self._outbox.stats().depth > 0 or self._lanes.waiting()

    def run(self) -> None:
        """Thread body: drain until ``stop`` is set. Batches still in flight at stop are left
        to ``flush()`` (or released when the outbox is next opened)."""
        if not self._active.acquire(blocking=False):
            raise UplinkError("DrainLoop.run() is already active: start one drain thread")
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    wait = self._cycle(flushing=self._flush_requested.is_set())
                except EdgeAppError:
                    # The outbox or transport failed (disk full, ...): keep the thread alive,
                    # the store keeps the data, and try again later.
                    _log.exception("drain loop step failed; retrying")
                    wait = self._retry.next()
                self._sleep(wait, until=None)
        finally:
            self._active.release()

    def flush(self, deadline_s: float) -> bool:
        """Deliver stored events until the outbox is empty (True) or ``deadline_s`` seconds of
        real time have passed (False). Ignores ``stop``; thread-safe.

        While ``run()`` is active it does the delivering (without holding back partial batches)
        and this call waits; otherwise this call drives the loop itself and, at the deadline,
        releases batches still unacknowledged. The budget is real time (a service manager's stop
        timeout), not the injected clock.
        """
        end = time.monotonic() + max(deadline_s, 0.0)
        self._flush_requested.set()  # run(), if active, stops holding back partial batches
        self._wake.set()
        try:
            while True:
                if self._active.acquire(blocking=False):
                    try:
                        return self._drive(end)
                    finally:
                        self._active.release()
                # run() is active and delivering; watch the store.
                if self._empty():
                    return True
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(remaining, _SLICE_S / 2))
        except EdgeAppError:
            _log.exception("flush failed; undelivered events stay in the outbox")
            return False
        finally:
            self._flush_requested.clear()

    def _drive(self, end: float) -> bool:
        """flush() without run(): deliver on this thread until empty or ``end``."""
        try:
            while True:
                self._wake.clear()
                wait = self._cycle(flushing=True)
                if self._empty():
                    return True
                if time.monotonic() >= end:
                    return False
                self._sleep(wait, until=end)
        finally:
            self._abandon()

    def _empty(self) -> bool:
        # Leased events and drop counts stay in the store until acked, so this also means
        # nothing is in flight.
        stats = self._outbox.stats()
        return stats.depth == 0 and stats.dropped == 0

    # -- one step --------------------------------------------------------------------------

    def _cycle(self, *, flushing: bool) -> float:
        """Settle finished publishes, send what may be sent; return seconds until next look."""
        now = self._clock.monotonic()
        self._reap(now)
        if not self._transport.is_connected:
            return _IDLE_S  # a connection change wakes us earlier
        if self._retry_at is not None:
            if now < self._retry_at:
                return min(self._retry_at - now, self._until_deadline(now))
            self._retry_at = None
        while len(self._inflight) + self._lanes.in_flight < self._window:
            hold = 0.0 if flushing or self._held else self._hold(now)
            if hold is None:
                break
            if hold > 0:
                return min(hold, self._until_deadline(now))
            out = self._held or self._lease()
            if out is None:
                break
            pace = self._limiter.delay(len(out.wire))
            if pace > 0:
                self._held = out  # keep its place; nothing else may overtake it
                return min(pace, self._until_deadline(now))
            self._held = None
            self._limiter.take(len(out.wire))
            handle = self._transport.publish(
                self._topic, out.wire, qos=1, content_type=self._packer.codec.content_type
            )
            handle.add_done_callback(self._on_done)
            deadline = now + self._ack_timeout_s
            self._inflight.append(_InFlight(out.batch, handle, deadline, len(out.wire)))
            if handle.done and not handle.ok:
                break  # the link just went down; no point leasing more
        pace = self._send_lanes(now)
        if pace > 0:
            return min(pace, self._until_deadline(now))
        return self._until_deadline(now)

    def _send_lanes(self, now: float) -> float:
        """Publish side-lane messages if no event waits; seconds to wait for the limiter."""
        # One window slot stays free for an event that may appear (unless the window is 1).
        room = self._window - len(self._inflight) - self._lanes.in_flight
        if self._window > 1:
            room -= 1
        if (
            not self._lanes
            or room <= 0
            or not self._transport.is_connected
            or self._held is not None
            or self._outbox.stats().pending > 0  # events first, always
        ):
            return 0.0
        return self._lanes.send(now, room)

    def _lease(self) -> Outgoing | None:
        limit = self._max_events
        if self._split_limit is not None:
            limit = min(limit, self._split_limit)
        return self._packer.lease(limit, self._max_bytes)

    def _hold(self, now: float) -> float | None:
        """Seconds to wait for a fuller batch, 0 to lease now, None when nothing is waiting."""
        if self._max_wait_s <= 0:
            return 0.0
        stats = self._outbox.stats()
        if stats.pending == 0:
            self._pending_since = None
            # Leasing now could grab an event enqueued a moment ago, without waiting for more;
            # only drop counts (which need no company) are worth a lease.
            return 0.0 if stats.dropped else None
        if stats.pending >= self._max_events or stats.pending_bytes >= self._max_bytes:
            return 0.0
        if self._pending_since is None:
            self._pending_since = now
        return max(0.0, self._pending_since + self._max_wait_s - now)

    def _reap(self, now: float) -> None:
        """Ack every acknowledged batch, release every failed or timed-out one."""
        self._lanes.reap(now)
        remaining: deque[_InFlight] = deque()
        for item in self._inflight:
            if item.handle.done:
                error = item.handle.result
                if error is None:
                    self._outbox.ack(item.batch)
                    self.batches_sent += 1
                    self.events_sent += len(item.batch.events)
                    self.bytes_sent += item.wire_bytes
                    self._retry.reset()
                    last = item.batch.last_seq
                    if last is not None and last >= self._split_until:
                        self._split_limit = None
                else:
                    self._failed(item, error, now)
            elif now >= item.deadline:
                self._failed(item, UplinkError("no PUBACK within ack_timeout_s"), now)
            else:
                remaining.append(item)
        self._inflight = remaining

    def _failed(self, item: _InFlight, error: UplinkError, now: float) -> None:
        code = error.code if isinstance(error, PublishRejectedError) else None
        if code in MALFORMED_REASON_CODES and item.batch.events:
            if len(item.batch.events) == 1:
                parked = self._outbox.dead_letter(item.batch, f"broker refused it: {error}")
                self.dead_lettered += parked
                self.publish_failures += 1
                return  # nothing to wait for: the next events may go at once
            # Split and resend at once: the broker is fine, one of these payloads is not.
            self._split_limit = max(1, len(item.batch.events) // 2)
            self._split_until = max(self._split_until, item.batch.last_seq or 0)
            self._outbox.release(item.batch)
            self.publish_failures += 1
            _log.warning(
                "batch %s (seq %s..%s) refused as malformed (%s); splitting it",
                item.batch.batch_id,
                item.batch.first_seq,
                item.batch.last_seq,
                error,
            )
            return
        self._outbox.release(item.batch)
        self.publish_failures += 1
        seqs = f"seq {item.batch.first_seq}..{item.batch.last_seq}"
        if isinstance(error, PublishRejectedError) or not item.handle.done:
            # The broker is up but refused or is too slow: pause before trying again.
            delay = self._retry.next()
            self._retry_at = now + delay
            _log.warning(
                "batch %s (%s) not delivered: %s; kept, retrying in %.1f s",
                item.batch.batch_id,
                seqs,
                error,
                delay,
            )
        else:
            # The link is down; reconnecting is the transport's job.
            _log.info("batch %s (%s) not delivered: %s; kept", item.batch.batch_id, seqs, error)

    def _abandon(self) -> None:
        """Settle what finished and release the rest (used when flush ends)."""
        self._reap(self._clock.monotonic())
        if self._held is not None:
            self._outbox.release(self._held.batch)
            self._held = None
        while self._inflight:
            self._outbox.release(self._inflight.popleft().batch)
        self._lanes.abandon()

    # -- waiting ---------------------------------------------------------------------------

    def _until_deadline(self, now: float) -> float:
        deadlines = [i.deadline for i in self._inflight] + self._lanes.deadlines()
        if not deadlines:
            return _IDLE_S
        return max(0.0, min(min(deadlines) - now, _IDLE_S))

    def _sleep(self, seconds: float, *, until: float | None) -> None:
        """Sleep up to ``seconds`` (real time), waking on notify/PUBACK/connection change, on
        ``stop`` (unless flushing, ``until`` given) or at ``until`` (time.monotonic())."""
        end = time.monotonic() + min(seconds, _IDLE_S)
        if until is not None:
            end = min(end, until)
        while True:
            if until is None and self._stop.is_set():
                return
            remaining = end - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(remaining, _SLICE_S)):
                return

    def _on_done(self, handle: PublishHandle) -> None:
        self._wake.set()

    def _on_connection_change(self, connected: bool) -> None:
        self._wake.set()
