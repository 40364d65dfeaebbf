"""Shipping the app's own warnings and errors to CloudWatch Logs, buffered offline.

``LogBuffer`` is a logging handler that only appends to a bounded in-memory deque (a log call
never waits for disk or network). ``LogShipper.tick()`` (on the telemetry thread) moves those
lines into the ``logs`` lane of the outbox file, then sends what waits there with
``PutLogEvents``, in batches built by ``plan_log_batches`` to the API's rules:

* at most 10,000 events and 1,048,576 bytes per batch, counting each message's UTF-8 bytes
  plus 26;
* events in chronological order; one batch spans less than 24 hours;
* nothing older than 14 days (dropped and counted) or more than 2 hours in the future (kept
  until it is not: a clock set wrong at boot);
* one event at most 256 KB (longer messages are cut, and say so).
"""

from __future__ import annotations

__all__ = [
    "EVENT_OVERHEAD",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "CloudWatchLogsSink",
    "LogBuffer",
    "LogShipper",
    "plan_log_batches",
]

import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edge_app.clock import Clock
from edge_app.errors import EdgeAppError, TelemetryError
from edge_app.logs import JsonFormatter
from edge_app.outbox import LaneStore

_log = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
DAY_MS = 24 * 3600 * 1000
MAX_AGE_MS = 14 * DAY_MS
MAX_FUTURE_MS = 2 * 3600 * 1000
_CUT = " ...[cut]"


@dataclass(frozen=True, slots=True)
class LogPlan:
    """Batches of ``(timestamp_ms, message)`` ready to send, and what was left out."""

    batches: list[list[tuple[int, str]]]
    too_old: int
    too_new: list[tuple[int, str]]


def _fit(message: str) -> str:
    data = message.encode()
    if len(data) <= MAX_EVENT_BYTES:
        return message
    return data[: MAX_EVENT_BYTES - len(_CUT)].decode(errors="ignore") + _CUT


def plan_log_batches(events: Sequence[tuple[int, str]], now_ms: int) -> LogPlan:
    """Sort ``events`` by time and split them into batches that obey every PutLogEvents rule."""
    ordered = sorted(((ts, _fit(msg)) for ts, msg in events), key=lambda e: e[0])
    too_old = sum(1 for ts, _ in ordered if ts < now_ms - MAX_AGE_MS)
    too_new = [e for e in ordered if e[0] > now_ms + MAX_FUTURE_MS]
    usable = [e for e in ordered if now_ms - MAX_AGE_MS <= e[0] <= now_ms + MAX_FUTURE_MS]
    batches: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    size = 0
    for ts, msg in usable:
        cost = len(msg.encode()) + EVENT_OVERHEAD
        if current and (
            len(current) >= MAX_BATCH_EVENTS
            or size + cost > MAX_BATCH_BYTES
            or ts - current[0][0] >= DAY_MS
        ):
            batches.append(current)
            current, size = [], 0
        current.append((ts, msg))
        size += cost
    if current:
        batches.append(current)
    return LogPlan(batches, too_old, too_new)


class LogBuffer(logging.Handler):
    """Keeps WARNING and above as JSON lines in memory (at most ``capacity``; oldest lost,
    counted in ``lost``) until the shipper moves them to disk.

    Repeats are rate-limited: of the lines with the same logger and message template, at
    most ``burst`` per ``window_s`` seconds are kept; the first one after the window says
    how many were suppressed (``"repeats_suppressed": n``), so a flapping link cannot fill
    the log group or the disk.
    """

    def __init__(
        self,
        capacity: int = 10_000,
        level: int = logging.WARNING,
        *,
        burst: int = 5,
        window_s: float = 60.0,
    ) -> None:
        super().__init__(level)
        self.setFormatter(JsonFormatter())
        self._lines: deque[tuple[int, str]] = deque(maxlen=capacity)
        self._burst = burst
        self._window_s = window_s
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, n, hidden]
        self.lost = 0
        self.suppressed = 0

    def _admit(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        state = self._seen.get(key)
        if state is None or record.created - state[0] >= self._window_s:
            hidden = int(state[2]) if state else 0
            self._seen[key] = [record.created, 1, 0]
            if hidden:
                record.repeats_suppressed = hidden
            if len(self._seen) > 1000:  # forget quiet keys; bounded memory
                self._seen = {k: v for k, v in self._seen.items() if k == key}
            return True
        state[1] += 1
        if state[1] <= self._burst:
            return True
        state[2] += 1
        self.suppressed += 1
        return False

    def emit(self, record: logging.LogRecord) -> None:
        if not self._admit(record):
            return
        try:
            line = self.format(record)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)
            return
        if len(self._lines) == self._lines.maxlen:
            self.lost += 1
        self._lines.append((int(record.created * 1000), line))

    def take(self) -> list[tuple[int, str]]:
        """Remove and return every buffered ``(timestamp_ms, line)``."""
        out = []
        while self._lines:
            out.append(self._lines.popleft())
        return out


class LogsSink(Protocol):
    def send(self, batch: Sequence[tuple[int, str]]) -> None: ...


class CloudWatchLogsSink:
    """``PutLogEvents`` into ``group``/``stream`` (created on first use) with a boto3 ``logs``
    client (caller-owned)."""

    def __init__(self, client: Any, group: str, stream: str) -> None:
        self._client = client
        self._group = group
        self._stream = stream
        self._ready = False

    def send(self, batch: Sequence[tuple[int, str]]) -> None:
        from botocore.exceptions import (  # noqa: PLC0415  (optional [aws] extra)
            BotoCoreError,
            ClientError,
        )

        try:
            if not self._ready:
                self._create()
            self._client.put_log_events(
                logGroupName=self._group,
                logStreamName=self._stream,
                logEvents=[{"timestamp": ts, "message": msg} for ts, msg in batch],
            )
        except (BotoCoreError, ClientError) as exc:
            raise TelemetryError(
                f"CloudWatch Logs PutLogEvents to {self._group}/{self._stream} failed: {exc}; "
                "the lines stay queued (check network, credentials and IAM policy)"
            ) from exc

    def _create(self) -> None:
        for call, kwargs in (
            (self._client.create_log_group, {"logGroupName": self._group}),
            (
                self._client.create_log_stream,
                {"logGroupName": self._group, "logStreamName": self._stream},
            ),
        ):
            with contextlib.suppress(self._client.exceptions.ResourceAlreadyExistsException):
                call(**kwargs)
        self._ready = True


class LogShipper:
    """Moves buffered lines to the ``logs`` lane, then ships them; one thread calls ``tick``.

    Logs are the lowest lane of the uplink: they go over HTTPS, not MQTT, but share
    the device's link, so they are sent only while ``may_send()`` is true (the app passes
    "the MQTT drain has no event, snapshot or metric waiting"); meanwhile they are stored.
    """

    def __init__(
        self,
        buffer: LogBuffer,
        lane: LaneStore,
        sink: LogsSink | None,
        *,
        clock: Clock,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        self._buffer = buffer
        self._lane = lane
        self._sink = sink
        self._clock = clock
        self._may_send = may_send
        self.sent = 0
        self._lock = threading.Lock()

    def tick(self) -> int:
        """Store new lines durably and send what the rules allow; returns lines delivered."""
        with self._lock:
            lines = self._buffer.take()
            self._lane.add([(ts / 1000.0, json.dumps([ts, msg])) for ts, msg in lines])
            now_ms = int(self._clock.time() * 1000)
            self._lane.drop_older_than(now_ms / 1000.0 - MAX_AGE_MS / 1000.0)
            if self._sink is None or not self._may_send():
                return 0
            rows = self._lane.peek(MAX_BATCH_EVENTS * 3)
            # identical lines stamped in the same ms are one line repeated: sent once
            by_line: dict[tuple[int, str], list[int]] = {}
            for row in rows:
                _, msg = json.loads(row.body)
                # the row's time, corrected if the clock was stepped since the line was logged
                by_line.setdefault((round(row.ts * 1000), str(msg)), []).append(row.id)
            plan = plan_log_batches(list(by_line), now_ms)
            delivered = 0
            for batch in plan.batches:
                try:
                    self._sink.send(batch)
                except EdgeAppError as exc:
                    _log.debug("log shipping paused: %s", exc)  # a warning here would loop
                    break
                self._lane.delete([i for line in batch for i in by_line[line]])
                delivered += len(batch)
            self.sent += delivered
            return delivered
