"""The per-camera frame loop: source -> detector -> rules -> local actions -> outbox.

One ``CameraWorker`` per camera; the composition root runs each on its own thread. The loop is
the hot path: per frame it does the rate check, one ``detect`` call and the rule update, and
nothing else unless an event is raised.
"""

from __future__ import annotations

__all__ = ["CameraStats", "CameraWorker", "EventSink"]

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from edge_app.actions import SnapshotWriter
from edge_app.domain import Detections, Event, Frame, Phase
from edge_app.errors import EdgeAppError
from edge_app.sources import FrameSource
from edge_app.vision.detector import Detector
from edge_app.vision.rules import RuleEngine

log = logging.getLogger(__name__)

EventSink = Callable[[Event], Event]
"""Stores an event durably and returns it with its ``seq`` (``Outbox.enqueue``)."""


@dataclass(slots=True)
class CameraStats:
    """Counters of one camera's loop; read from other threads without a lock (ints only).

    ``detecting`` is true while the loop is inside ``detect``; ``inference_ms`` keeps the
    detector time of the last frames (ms) for the telemetry collector (an append is atomic).
    """

    frames: int = 0
    processed: int = 0
    skipped_rate: int = 0
    detections: int = 0
    events: int = 0
    events_unstored: int = 0
    last_frame_mono: float = 0.0
    first_detection_mono: float | None = None
    detecting: bool = False
    inference_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))


class CameraWorker:
    """Runs one camera's loop until its source ends or ``stop`` is set."""

    def __init__(
        self,
        source: FrameSource,
        detector: Detector,
        rules: RuleEngine,
        sink: EventSink,
        *,
        stop: threading.Event,
        fps: float | None = None,
        snapshots: SnapshotWriter | None = None,
        detector_lock: threading.Lock | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.camera = source.camera
        self.stats = CameraStats()
        self._source = source
        self._detector = detector
        self._rules = rules
        self._sink = sink
        self._stop = stop
        # a frame is due 1 ms early so float jitter in timestamps never skips a frame
        self._interval = (1.0 / fps - 1e-3) if fps else 0.0
        self._snapshots = snapshots
        self._lock = detector_lock or threading.Lock()
        self._on_event = on_event

    def run(self) -> None:
        """Thread body. Ends every open episode when the source ends or the app stops."""
        last: Frame | None = None
        next_due = float("-inf")
        stats = self.stats
        try:
            for frame in self._source.frames(self._stop):
                stats.frames += 1
                stats.last_frame_mono = frame.mono
                last = frame
                if frame.mono < next_due:
                    stats.skipped_rate += 1
                    continue
                next_due = frame.mono + self._interval
                with self._lock:  # one interpreter may serve several cameras
                    stats.detecting = True
                    started = time.perf_counter()
                    detections = self._detector.detect(frame.image)
                    stats.inference_ms.append((time.perf_counter() - started) * 1000.0)
                    stats.detecting = False
                stats.processed += 1
                if len(detections):
                    stats.detections += len(detections)
                    if stats.first_detection_mono is None:
                        stats.first_detection_mono = frame.mono
                for event in self._rules.update(frame, detections):
                    self._raise(event, frame, detections)
        except EdgeAppError:
            log.exception("camera %s stopped", self.camera)
            raise
        finally:
            if last is not None:
                for event in self._rules.finish(last.mono, last.wall):
                    self._raise(event, None, Detections.empty())

    def _raise(self, event: Event, frame: Frame | None, detections: Detections) -> None:
        if frame is not None and event.phase is Phase.START and self._snapshots is not None:
            snapshot = self._snapshots.save(frame, detections, event)
            if snapshot is not None:
                event = replace(event, snapshot=snapshot)
        try:
            event = self._sink(event)
        except EdgeAppError as exc:
            # the local action already happened; issue: durable spill when the store fails
            self.stats.events_unstored += 1
            log.error("event %s of rule %s could not be stored: %s", event.id, event.rule, exc)
            return
        self.stats.events += 1
        log.info(
            "event %s %s %s seq=%s label=%s score=%.2f",
            event.rule,
            event.phase.value,
            event.camera,
            event.seq,
            event.label,
            event.score,
        )
        if self._on_event is not None:
            self._on_event(event)
