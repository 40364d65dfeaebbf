"""The telemetry loop: collect, aggregate per minute, store in the metrics lane, ship.

One thread, one ``stop`` event. Every ``sample_s`` seconds it runs the collector, samples the
registry into the aggregator, commits closed minutes to the metrics lane of the outbox file,
drops aggregates CloudWatch would refuse (older than 14 days, counted), and sends the oldest
waiting aggregates through the sink. A failing sink leaves them stored; they go out with their
original timestamps once it works again.
"""

from __future__ import annotations

__all__ = ["MAX_AGE_S", "TelemetryLoop"]

import logging
import threading
import time
from collections.abc import Callable

from edge_app.clock import Clock
from edge_app.errors import EdgeAppError
from edge_app.outbox import LaneStore
from edge_app.telemetry.aggregate import MetricDatum, MinuteAggregator
from edge_app.telemetry.sinks import MetricsSink

_log = logging.getLogger(__name__)

MAX_AGE_S = 14 * 86400
"""CloudWatch refuses data points older than two weeks."""
_SEND_CHUNK = 3000  # rows per send; the sink splits them into requests within the API limits


class TelemetryLoop:
    """Drives ``collect`` + ``aggregator`` + ``lane`` + ``sink`` every ``sample_s`` seconds."""

    def __init__(
        self,
        *,
        aggregator: MinuteAggregator,
        lane: LaneStore,
        sink: MetricsSink | None,
        clock: Clock,
        stop: threading.Event,
        collect: Callable[[], None] = lambda: None,
        sample_s: float = 10.0,
    ) -> None:
        if not sample_s > 0:
            raise ValueError(f"sample_s must be > 0 seconds, got {sample_s}")
        self._aggregator = aggregator
        self._lane = lane
        self._sink = sink
        self._clock = clock
        self._stop = stop
        self._collect = collect
        self._sample_s = sample_s
        self._failing = False
        self.sent = 0
        self.cpu_s = 0.0  # CPU time of the loop's thread so far (bench/metrics.py reports it)

    def run(self) -> None:
        """Thread body; on stop, the current partial minute is stored (not lost)."""
        while True:
            started = time.thread_time()
            try:
                self.tick()
            except EdgeAppError:
                _log.exception("telemetry step failed; retrying next tick")
            self.cpu_s += time.thread_time() - started
            if self._stop.wait(self._sample_s):
                break
        try:
            self._store(self._aggregator.close())
            self.ship()
        except EdgeAppError:
            _log.exception("telemetry could not store its last minute")

    def tick(self) -> None:
        """One step: collect, sample, store closed minutes, ship."""
        self._collect()
        self._store(self._aggregator.sample(self._clock.time()))
        self.ship()

    def ship(self) -> int:
        """Drop stale rows, send waiting ones until the lane is empty or the sink fails;
        returns how many aggregates were delivered."""
        dropped = self._lane.drop_older_than(self._clock.time() - MAX_AGE_S)
        if dropped:
            _log.warning("dropped %d metric aggregates older than 14 days", dropped)
        if self._sink is None:
            return 0
        delivered = 0
        while rows := self._lane.peek(_SEND_CHUNK):
            try:
                self._sink.send([MetricDatum.from_json(r.body, ts=r.ts) for r in rows])
            except EdgeAppError as exc:
                if not self._failing:
                    _log.warning("metrics sink failed, aggregates stay queued: %s", exc)
                self._failing = True
                break
            if self._failing:
                _log.info("metrics sink works again")
            self._failing = False
            self._lane.delete([r.id for r in rows])
            delivered += len(rows)
        self.sent += delivered
        return delivered

    def _store(self, datums: list[MetricDatum]) -> None:
        self._lane.add([(d.ts, d.to_json()) for d in datums])
