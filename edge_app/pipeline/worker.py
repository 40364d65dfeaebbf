"""The per-camera frame loop: source -> detector -> rules -> local actions -> outbox (see the
package docstring)."""

from __future__ import annotations

__all__ = ["MAX_DETECT_ERRORS", "CameraParts", "CameraWorker"]

import logging
import os
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from edge_app.actions import ClipRecorder, Preview, PreviewSlot, SnapshotWriter
from edge_app.clock import Clock
from edge_app.config import (
    AppConfig,
    CameraConfig,
    RuleConfig,
    TamperConfig,
)
from edge_app.domain import Detections, EndReason, Event, Frame, Image, Phase, UpdateReason
from edge_app.errors import EdgeAppError
from edge_app.pipeline.recent import RecentFrames
from edge_app.pipeline.runtime import EventSink, Runtime, RuntimeHolder
from edge_app.pipeline.stats import CameraStats
from edge_app.sources import FrameSource, PreparesFrames
from edge_app.vision.crop import Window, motion_window, to_frame
from edge_app.vision.detector import Preparer
from edge_app.vision.inspection import build_inspectors
from edge_app.vision.motion import DetectionGate
from edge_app.vision.preprocess import PreparedInput
from edge_app.vision.rules import EventContext, RuleEngine
from edge_app.vision.stage import RuleStage, detection_rules
from edge_app.vision.tamper import TamperMonitor, TamperStep, tamper_event

log = logging.getLogger(__name__)

MAX_DETECT_ERRORS = 25
"""Failed ``detect`` calls in a row a camera loop rides out (each frame counted in
``detect_errors`` and lost) before it stops: long enough for the over-the-air updater's
health watch to switch a failing new model back, short enough that a model that fails for
good stops the camera as it always did."""


@dataclass(frozen=True, slots=True)
class CameraParts:
    """What one camera loop works with besides its camera's config. The composition root owns
    every part: it closes ``source`` once the loop has ended, and the detectors of ``live``.

    ``live`` holds the runtime in force (detector and config); ``sink`` stores each event
    raised; the loop runs until ``stop`` is set or the source ends; ``clock`` is what frame
    lateness (``camera.max_lag_s``) is measured on; ``detector_lock`` is held around each
    ``detect`` (cameras sharing one detector pass the same lock); ``snapshots`` and ``clips``
    are the local actions (None: none); ``preview`` is the live view's slot (filled only while
    a viewer asks); ``recent`` keeps a few frames for over-the-air model test runs (None:
    none).
    """

    source: FrameSource
    live: RuntimeHolder
    sink: EventSink
    stop: threading.Event
    clock: Clock
    detector_lock: AbstractContextManager[object] = field(default_factory=threading.Lock)
    snapshots: SnapshotWriter | None = None
    clips: ClipRecorder | None = None
    preview: PreviewSlot | None = None
    recent: RecentFrames | None = None


class CameraWorker:
    """Runs one camera's loop until its source ends or ``stop`` is set.

    ``camera`` is this camera's section of the config in force (``parts.live``), and
    ``parts.source`` its source; ``ValueError`` otherwise.
    """

    def __init__(self, camera: CameraConfig, parts: CameraParts) -> None:
        runtime = parts.live.current
        config = runtime.snapshot.config
        if camera not in config.cameras:
            raise ValueError(f"camera {camera.name!r} is not a camera of the config in force")
        if parts.source.camera != camera.name:
            raise ValueError(f"source of camera {parts.source.camera!r} given for {camera.name!r}")
        self.camera = camera.name
        self.stats = CameraStats(config_version=config.version)
        self._source = parts.source
        self._live = parts.live
        self._runtime = runtime
        self._detector = runtime.detector
        self._rules = RuleEngine(camera, detection_rules(config.rules, camera), _context(runtime))
        self._sink = parts.sink
        self._stop = parts.stop
        self._clock = parts.clock
        self._lock = parts.detector_lock
        self._snapshots = parts.snapshots
        self._clips = parts.clips
        self.preview = parts.preview
        self._recent = parts.recent
        self._error_streak = 0
        self._last_detections = Detections.empty()
        self._motion: bool | None = None
        self._tamper_starts: dict[str, str] = {}
        self._gate: DetectionGate | None = None
        self._tamper: TamperMonitor | None = None
        self.stages: list[RuleStage] = []
        """The camera's inspection stages (anomaly, classifier), in that order."""
        self._configure(camera, None)
        self._preparer: Preparer | None = None
        self._bind_detector()

    def _configure(self, camera: CameraConfig, frame: Frame | None) -> None:
        """Take fps, motion gating, tamper checks and lateness from ``camera``; tamper
        conditions of a replaced monitor end at ``frame``."""
        # a frame is due 1 ms early so float jitter in timestamps never skips a frame
        self._interval = (1.0 / camera.fps - 1e-3) if camera.fps else 0.0
        # Late frames (live/realtime sources): dropped and counted, so a camera that cannot
        # keep up falls behind by at most max_lag_s instead of queueing.
        self._max_lag = camera.max_lag_s
        # Motion gating (camera.motion): None detects on every processed frame.
        if camera.motion != (self._gate.config if self._gate is not None else None):
            self._gate = DetectionGate(camera.motion) if camera.motion is not None else None
        # an inspecting camera needs the tamper checks to tell a changed view from a defect
        tamper = camera.tamper or (TamperConfig() if camera.anomaly is not None else None)
        if tamper != (self._tamper.config if self._tamper is not None else None):
            if frame is not None:
                self._finish_tamper(frame)
            self._tamper = TamperMonitor(tamper) if tamper is not None else None
        configs = [c for c in (camera.anomaly, camera.classify) if c is not None]
        if configs != [stage.config for stage in self.stages]:
            for stage in self.stages:
                if frame is not None:
                    for event in stage.finish(frame.mono, frame.wall, EndReason.CONFIG_CHANGED):
                        self._raise(event, None, Detections.empty())
            config = self._runtime.snapshot.config
            self.stages = build_inspectors(camera, config.rules, _context(self._runtime))

    def _bind_detector(self) -> None:
        """Have the source's reader thread resize each frame for the detector, when every
        frame goes to the detector (no motion gate, no fps limit): the resize then overlaps
        the previous frame's inference instead of preceding this one's. Gated or thinned
        cameras would resize frames they skip, so they resize in ``detect``."""
        detector = self._detector
        every_frame = self._gate is None and self._interval == 0.0
        # Only with a core to spare: when inference keeps every core busy, a resize on the
        # reader thread preempts one of its threads and the whole invoke waits for that
        # straggler (P1 on 2 cores, 2 threads: 0.877 of the bound with it, 0.878 without).
        spare_core = detector.threads < (os.cpu_count() or 1)
        preparer = detector.preparer() if every_frame and spare_core else None
        self._preparer = preparer
        if isinstance(self._source, PreparesFrames):
            self._source.prepare_with(preparer)

    def _adopt(self, runtime: Runtime, frame: Frame) -> None:
        """Switch to ``runtime`` before processing ``frame`` (top of the loop, this thread)."""
        old = self._runtime
        self._runtime = runtime
        config = runtime.snapshot.config
        camera = next((c for c in config.cameras if c.name == self.camera), None)
        if camera is None:  # remote config cannot remove cameras; keep going as we were
            return
        self._configure(camera, frame)
        self._detector = runtime.detector
        ctx = _context(runtime)
        if _same_rules(old.snapshot.config, config, self.camera):
            self._rules.context = ctx  # open episodes carry on under the new version
            for stage in self.stages:
                stage.context = ctx
        else:
            # Rules or zones changed: episodes of the old rules end here, the new ones start
            # from scratch (a rule that no longer exists must not stay open forever).
            ended = self._rules.finish(frame.mono, frame.wall, EndReason.CONFIG_CHANGED)
            for stage in self.stages:
                ended += stage.rules_changed(camera, config.rules, frame)
            for event in ended:
                self._raise(event, None, Detections.empty())
            self._rules = RuleEngine(camera, detection_rules(config.rules, camera), ctx)
        self._bind_detector()
        self.stats.config_version = config.version
        self.stats.config_changes += 1
        self.stats.config_adopted_mono = frame.mono
        log.info(
            "camera %s runs config v%d (%s)", self.camera, config.version, runtime.snapshot.digest
        )

    def run(self) -> None:
        """Thread body. Ends every open episode when the source ends or the app stops."""
        last: Frame | None = None
        next_due = float("-inf")
        stats = self.stats
        try:
            for frame in self._source.frames(self._stop):
                if self._live.current is not self._runtime:
                    self._adopt(self._live.current, frame)
                stats.frames += 1
                stats.last_frame_mono = frame.mono
                last = frame
                if self._recent is not None:
                    self._recent.offer(self.camera, frame)
                if self._clips is not None:
                    self._clips.push(frame)  # references only; the writer thread encodes
                if frame.mono < next_due:
                    stats.skipped_rate += 1
                    continue
                next_due = frame.mono + self._interval
                self._step(frame)
                if self.preview is not None and self.preview.wanted:
                    self._publish(self.preview, frame)
        except EdgeAppError:
            log.exception("camera %s stopped", self.camera)
            raise
        finally:
            self._finish(last)

    def _step(self, frame: Frame) -> None:
        """A frame due at this camera's fps: lateness, tamper checks, inspection stages, motion
        gate, detection."""
        stats = self.stats
        if self._late(frame):
            stats.dropped_late += 1
            return
        if self._tamper is not None:
            self._check_tamper(frame)
        for stage in self.stages:
            if stage.due(frame.mono):
                self._inspect(stage, frame)
        gate = self._gate
        if gate is not None:
            self._motion = gate.should_detect(frame.mono, frame.image, self._rules.busy)
            if not self._motion:
                stats.skipped_motion += 1
                return
        self._detect(frame)

    def _publish(self, slot: PreviewSlot, frame: Frame) -> None:
        """Hand the live view this frame and what was decided on it (references only)."""
        config = self._runtime.snapshot.config
        camera = next(c for c in config.cameras if c.name == self.camera)
        lines = tuple(
            (r.name, r.line)
            for r in config.rules
            if r.line is not None and r.camera in (None, self.camera)
        )
        slot.put(
            Preview(
                frame=frame,
                detections=self._last_detections,
                tracks=tuple(self._rules.tracks),
                motion=self._motion if self._gate is not None else None,
                tamper=tuple(self._tamper_starts),
                zones=tuple((z.name, tuple(z.polygon)) for z in camera.zones),
                lines=lines,
                config_version=config.version,
            )
        )

    def _late(self, frame: Frame) -> bool:
        return self._max_lag is not None and self._clock.monotonic() - frame.mono > self._max_lag

    def _detect(self, frame: Frame) -> None:
        stats = self.stats
        image, window = frame.image, self._crop_window(frame)
        if window is not None:
            x, y, w, h = window
            image = image[y : y + h, x : x + w]  # a view; the detector's resize reads it
            stats.cropped += 1
        with self._lock:  # one interpreter may serve several cameras
            # Checked again once our turn comes: with many cameras the wait for the shared
            # detector is what makes a frame late, and running the detector on a frame that
            # is already too old only makes the next cameras' frames late too.
            if self._late(frame):
                stats.dropped_late += 1
                return
            stats.detecting = True
            started = time.perf_counter()
            preparer, prepared = self._preparer, frame.prepared
            try:
                if preparer is not None and isinstance(prepared, PreparedInput):
                    detections = preparer.detect_prepared(image, prepared)
                else:
                    detections = self._detector.detect(image)
            except Exception as exc:
                stats.detecting = False
                self._detect_failed(exc)
                return
            self._error_streak = 0
            stats.inference_ms.append((time.perf_counter() - started) * 1000.0)
            stats.detecting = False
        if window is not None:
            detections = to_frame(detections, window, frame.size)
        self._last_detections = detections
        stats.processed += 1
        if len(detections):
            stats.detections += len(detections)
            if stats.first_detection_mono is None:
                stats.first_detection_mono = frame.mono
        for event in self._rules.update(frame, detections):
            self._raise(event, frame, detections)

    def _detect_failed(self, exc: Exception) -> None:
        """Count a failed ``detect`` (the frame is lost); re-raise once ``MAX_DETECT_ERRORS``
        failed in a row."""
        stats = self.stats
        stats.detect_errors += 1
        stats.last_detect_error = f"{type(exc).__name__}: {exc}"[:300]
        self._error_streak += 1
        if self._error_streak == 1:
            log.error("camera %s: detect failed (%s)", self.camera, stats.last_detect_error)
        if self._error_streak >= MAX_DETECT_ERRORS:
            log.error("camera %s: %d detect calls failed in a row", self.camera, MAX_DETECT_ERRORS)
            raise exc

    def _inspect(self, stage: RuleStage, frame: Frame) -> None:
        started = time.perf_counter()
        view_changed = self._tamper is not None and self._tamper.troubled
        events, detections = stage.inspect(frame, view_changed)
        self.stats.inspect_ms.append((time.perf_counter() - started) * 1000.0)
        self.stats.inspected += 1
        for event in events:
            self._raise(event, frame, detections, stage.overlay(frame))

    def _crop_window(self, frame: Frame) -> Window | None:
        """The window around small motion to detect on (``camera.motion.crop``), or None."""
        gate = self._gate
        if gate is None or gate.crop_region is None:
            return None
        return motion_window(
            gate.crop_region,
            frame.size,
            self._detector.input_size,
            max_share=gate.config.crop_max_share,
        )

    def _finish(self, last: Frame | None) -> None:
        """End open episodes and tamper conditions; hand open clips to the writer."""
        if last is not None:
            ended = self._rules.finish(last.mono, last.wall)
            for stage in self.stages:
                ended += stage.finish(last.mono, last.wall)
            for event in ended:
                self._raise(event, None, Detections.empty())
            self._finish_tamper(last)
        if self._clips is not None:
            self._clips.flush()

    def _check_tamper(self, frame: Frame) -> None:
        assert self._tamper is not None
        for step in self._tamper.update(frame.mono, frame.image):
            self._tamper_step(step, frame)

    def _finish_tamper(self, frame: Frame) -> None:
        if self._tamper is not None:
            for step in self._tamper.finish():
                self._tamper_step(step, frame)

    def _tamper_step(self, step: TamperStep, frame: Frame) -> None:
        assert self._tamper is not None
        start_id = self._tamper_starts.pop(step.kind, None) if step.phase is Phase.END else None
        event = tamper_event(
            step,
            ctx=self._rules.context,
            camera=self.camera,
            severity=self._tamper.config.severity,
            mono=frame.mono,
            wall=frame.wall,
            start_id=start_id,
        )
        if step.phase is Phase.START:
            self._tamper_starts[step.kind] = event.id
        self.stats.tamper_events += 1
        self._raise(event, None, Detections.empty())

    def _raise(
        self,
        event: Event,
        frame: Frame | None,
        detections: Detections,
        overlay: Image | None = None,
    ) -> None:
        """Local actions, then the sink; ``overlay`` is what the annotated snapshot is drawn
        on instead of the frame (an anomaly heat map)."""
        if frame is not None and event.phase is Phase.START and self._clips is not None:
            clip = self._clips.begin(f"{event.id}.mp4", frame.mono)
            event = replace(event, extra={**event.extra, "clip": clip.path.name})
        if frame is not None and self._snapshots is not None and _wants_snapshot(event):
            snapshot = self._snapshots.save(frame, detections, event, base=overlay)
            if snapshot is not None:
                event = replace(event, snapshot=snapshot)
        try:
            event = self._sink(event)
        except EdgeAppError as exc:
            # the local action (snapshot) already happened; the frame loop must go on even
            # when the store cannot take the event (disk full): it is counted and logged
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


def _wants_snapshot(event: Event) -> bool:
    """A ``start``, and an ``update`` for a better snapshot: its frame is the track's new best
    sighting, so it gets files of its own instead of pointing at the start's."""
    return event.phase is Phase.START or event.update_reason is UpdateReason.BETTER_SNAPSHOT


def _context(runtime: Runtime) -> EventContext:
    """What the events raised under ``runtime`` carry: device, model and config version."""
    config = runtime.snapshot.config
    return EventContext(config.device.thing_name, runtime.detector.model, config.version)


def _same_rules(old: AppConfig, new: AppConfig, camera: str) -> bool:
    """Whether ``camera`` has the same zones and the same rules under both configs."""

    def view(config: AppConfig) -> tuple[object, list[RuleConfig]] | None:
        cam = next((c for c in config.cameras if c.name == camera), None)
        if cam is None:
            return None
        return cam.zones, [r for r in config.rules if r.camera in (None, camera)]

    before = view(old)
    return before is not None and before == view(new)
