"""Side lanes below the events: what they send, and how the drain loop sends them.

The uplink carries four kinds of data in a fixed priority order: events, snapshots, metrics,
logs. Events are the drain loop's own business (``Outbox`` batches). Every lane
below them is a ``LaneSender``, handed to ``DrainLoop`` as an ordered list, highest first;
``SideLanes`` keeps their publishes in flight and settles them.

The rules, enforced by ``DrainLoop``:

* a lane is asked for a publish only when no event is waiting or held for the rate limiter,
  and every lane above it has nothing to send right now;
* every publish (events and lanes) goes through the one ``RateLimiter`` and counts in the one
  in-flight window, but the lanes leave headroom for events: one window slot, and a quarter
  of each rate cap (at the default caps, one full 128 KB event batch), so an event that
  appears behind a lane backlog is sent next, without waiting for a lane's PUBACK or its
  share of the byte budget;
* a publish that fails or gets no PUBACK in time is handed back (``failed``): its rows stay
  stored and it is offered again after a retry backoff of the lanes' own (at once after a
  reconnect), so a lane the broker keeps refusing (say, a topic the IoT policy does not
  allow) pauses the lanes, never the events.

Lane senders are used by the drain thread only, except ``waiting()``, which must be
thread-safe (``DrainLoop.backlog`` calls it from other threads).
"""

from __future__ import annotations

__all__ = ["LanePublish", "LaneSender", "SideLanes", "StoredLaneSender"]

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge_app.errors import PublishRejectedError
from edge_app.outbox import LaneRow, LaneStore
from edge_app.uplink.backoff import Backoff
from edge_app.uplink.ratelimit import RateLimiter
from edge_app.uplink.transport import PublishHandle, Transport

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LanePublish:
    """One message of a side lane: ``topic``, ``payload`` (QoS 1) and the lane ``rows`` (row
    ids of its ``LaneStore``) it carries, removed by the sender once it is acknowledged."""

    topic: str
    payload: bytes
    rows: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError(f"a lane publish on {self.topic} must carry at least one row")


class LaneSender(Protocol):
    """One side lane: turns its stored rows into publishes and settles them.

    ``next_publish`` must not hand out rows already handed out and not yet settled (several
    publishes of one lane may be in flight). ``delivered`` removes the rows; ``failed`` keeps
    them and offers the same publish again later (it is also how the drain gives back a
    publish it could not send yet).
    """

    @property
    def lane(self) -> str:
        """The lane's name, for logs ("snapshots", "metrics")."""
        ...

    def next_publish(self) -> LanePublish | None:
        """The oldest publish not yet handed out, or None when nothing waits."""
        ...

    def delivered(self, publish: LanePublish) -> None:
        """The broker acknowledged ``publish``: remove its rows."""
        ...

    def failed(self, publish: LanePublish) -> None:
        """``publish`` was not delivered: keep its rows, offer it again first."""
        ...

    def waiting(self) -> bool:
        """True while rows are stored that are not yet acknowledged. Thread-safe."""
        ...


class StoredLaneSender:
    """The bookkeeping every ``LaneSender`` over a ``LaneStore`` needs; subclasses say how
    rows become publishes (``next_publish``, using ``_unclaimed`` and ``_claim``).

    A row is *claimed* from the moment it is in a publish handed out or waiting in ``_ready``
    until it is settled; claimed rows are still stored (they leave on PUBACK), so reads skip
    them. A publish handed back (``failed``) is offered again first, as it was built.
    """

    lane: str

    def __init__(self, store: LaneStore) -> None:
        self._lane = store
        self._ready: deque[LanePublish] = deque()
        self._claimed: set[int] = set()

    @property
    def store(self) -> LaneStore:
        """The lane it reads (owned by whoever built it)."""
        return self._lane

    def next_publish(self) -> LanePublish | None:
        raise NotImplementedError

    def delivered(self, publish: LanePublish) -> None:
        """The broker acknowledged ``publish``: its rows leave the lane."""
        self._lane.delete(list(publish.rows))
        self._claimed.difference_update(publish.rows)

    def failed(self, publish: LanePublish) -> None:
        """Not delivered: the rows stay; the same publish is offered again first."""
        self._ready.appendleft(publish)

    def waiting(self) -> bool:
        """True while rows are stored (sent ones leave on PUBACK). Thread-safe."""
        return self._lane.stats().rows > 0

    def _unclaimed(self, limit: int) -> list[LaneRow]:
        """The oldest ``limit`` stored rows not yet claimed."""
        rows = self._lane.peek(limit + len(self._claimed))
        return [r for r in rows if r.id not in self._claimed][:limit]

    def _claim(self, publish: LanePublish) -> LanePublish:
        self._claimed.update(publish.rows)
        return publish


@dataclass(frozen=True, slots=True)
class _Sent:
    sender: LaneSender
    publish: LanePublish
    handle: PublishHandle
    deadline: float  # clock.monotonic() by which the PUBACK must have arrived


class SideLanes:
    """The drain loop's side lanes (``senders``, highest priority first) and their publishes
    in flight. Owned by the drain thread."""

    def __init__(
        self,
        senders: Sequence[LaneSender],
        transport: Transport,
        limiter: RateLimiter,
        *,
        ack_timeout_s: float,
        retry: Backoff,
        on_done: Callable[[PublishHandle], None],
    ) -> None:
        self._senders = list(senders)
        self._transport = transport
        self._limiter = limiter
        self._ack_timeout_s = ack_timeout_s
        self._on_done = on_done
        self._inflight: list[_Sent] = []
        self._retry = retry
        self._paused_until: float | None = None  # clock.monotonic() after a refusal
        # Rate headroom kept for events: a quarter of each cap (at least one publish).
        self._reserve_publishes = max(1, limiter.publishes_per_s // 4)
        self._reserve_bytes = limiter.bytes_per_s // 4
        self.sent = 0
        self.failures = 0

    def __bool__(self) -> bool:
        return bool(self._senders)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def deadlines(self) -> list[float]:
        return [s.deadline for s in self._inflight]

    def waiting(self) -> bool:
        """True while any lane has rows not yet acknowledged. Thread-safe (each sender's
        ``waiting`` is)."""
        return any(sender.waiting() for sender in self._senders)

    def send(self, now: float, room: int) -> float:
        """Publish lane messages, highest lane first, while ``room`` window slots are free;
        returns seconds to wait for the rate limiter (0.0: nothing more to send now)."""
        if self._paused_until is not None:
            if now < self._paused_until:
                return 0.0  # the drain looks again within a second
            self._paused_until = None
        while room > 0:
            for sender in self._senders:
                publish = sender.next_publish()
                if publish is not None:
                    break
            else:
                return 0.0
            size = len(publish.payload)
            pace = self._limiter.delay(
                size, reserve_publishes=self._reserve_publishes, reserve_bytes=self._reserve_bytes
            )
            if pace > 0:
                # Give it back rather than hold it: a higher lane's row may appear meanwhile.
                sender.failed(publish)
                return pace
            self._limiter.take(size)
            handle = self._transport.publish(publish.topic, publish.payload, qos=1)
            handle.add_done_callback(self._on_done)
            self._inflight.append(_Sent(sender, publish, handle, now + self._ack_timeout_s))
            room -= 1
            if handle.done and not handle.ok:
                break  # the link just went down; reap() settles it
        return 0.0

    def reap(self, now: float) -> None:
        """Settle acknowledged, failed and timed-out publishes. A refusal or a missing PUBACK
        pauses the lanes for the next backoff delay; a lost link does not (the transport
        reconnects, then they go at once)."""
        pause = False
        remaining: list[_Sent] = []
        for item in self._inflight:
            if item.handle.done and item.handle.ok:
                item.sender.delivered(item.publish)
                self.sent += 1
                self._retry.reset()
            elif item.handle.done or now >= item.deadline:
                item.sender.failed(item.publish)
                self.failures += 1
                error = item.handle.result if item.handle.done else "no PUBACK in time"
                _log.info(
                    "%s publish %s not delivered: %s; kept",
                    item.sender.lane,
                    item.publish.topic,
                    error,
                )
                # Refused, or the broker is too slow: pause. A lost link is the transport's
                # to fix (reconnect), as for event batches.
                pause = pause or not item.handle.done or isinstance(error, PublishRejectedError)
            else:
                remaining.append(item)
        self._inflight = remaining
        if pause:
            self._paused_until = now + self._retry.next()

    def abandon(self) -> None:
        """Hand every publish still in flight back to its lane (flush ended)."""
        for item in self._inflight:
            item.sender.failed(item.publish)
        self._inflight.clear()
