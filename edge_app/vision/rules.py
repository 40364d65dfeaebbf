"""Presence rules: label set + minimum score + optional zone + consecutive frames -> events.

Rules with ``per_object: true`` instead raise one event sequence per tracked object
(``edge_app.vision.lifecycle``); both kinds are evaluated here, behind one interface.

Per (rule, camera) an *episode* starts once the condition has held for ``min_frames``
consecutive processed frames (``start`` event, with the best-scoring match), and ends once it
has been false for ``end_after_s`` seconds of frame time (``end`` event). Frame timestamps drive
everything, so a replay gives the same events on any machine.
"""

from __future__ import annotations

__all__ = ["EventContext", "RuleEngine"]

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from edge_app.config import CameraConfig, RuleConfig
from edge_app.domain import Detection, Detections, EndReason, Event, Frame, ModelRef, Phase
from edge_app.ids import new_ulid
from edge_app.vision.appearance import open_appearance
from edge_app.vision.geometry import anchor_points, points_in_polygon
from edge_app.vision.lifecycle import ObjectLifecycle, Transition
from edge_app.vision.schedule import in_schedule


@dataclass(frozen=True, slots=True)
class EventContext:
    """What every event of this device carries besides the detection itself."""

    device: str
    model: ModelRef
    config_version: int


@dataclass(slots=True)
class _Episode:
    streak: int = 0
    active: bool = False
    start_id: str = ""
    started_mono: float = 0.0
    last_seen_mono: float = 0.0
    last_match: Detection | None = None
    peak_score: float = 0.0


@dataclass(slots=True)
class _Watch:
    rule: RuleConfig
    labels: frozenset[str]
    zone: NDArray[np.float32] | None
    episode: _Episode = field(default_factory=_Episode)
    cooldown_until: float = float("-inf")
    absent_since: float | None = None
    count: int = 0


class RuleEngine:
    """Evaluates the rules of one camera frame by frame. Not thread-safe: one per camera."""

    def __init__(
        self,
        camera: CameraConfig,
        rules: list[RuleConfig],
        ctx: EventContext,
        *,
        utc_schedules: bool = False,
    ) -> None:
        self._utc = utc_schedules  # schedules read in UTC instead of local time (tests)
        zones = {z.name: np.asarray(z.polygon, dtype=np.float32) for z in camera.zones}
        self.camera = camera.name
        self._ctx = ctx
        mine = [r for r in rules if r.camera in (None, camera.name)]
        self._watches = [
            _Watch(r, frozenset(r.labels), zones[r.zone] if r.zone is not None else None)
            for r in mine
            if not r.per_object
        ]
        objects = [r for r in mine if r.per_object]
        # One re-identification descriptor per camera (an embedding model is loaded once).
        reid = open_appearance(camera.tracking) if objects else None
        self._objects = [
            ObjectLifecycle(r, zones[r.zone] if r.zone is not None else None, camera.tracking, reid)
            for r in objects
        ]
        self._start_ids: dict[tuple[str, int], tuple[str, float]] = {}

    def _matches(self, watch: _Watch, dets: Detections) -> Detection | None:
        """The best-scoring detection that satisfies the rule, if at least ``min_count`` do;
        sets ``watch.count`` to how many do."""
        watch.count = 0
        if len(dets) == 0:
            return None
        mask = np.fromiter((label in watch.labels for label in dets.labels), bool, len(dets))
        mask &= dets.scores >= watch.rule.min_score
        if watch.rule.min_area > 0:
            xyxy = dets.xyxy
            mask &= (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) >= watch.rule.min_area
        if watch.zone is not None and mask.any():
            mask &= points_in_polygon(anchor_points(dets.xyxy), watch.zone)
        watch.count = int(mask.sum())
        if watch.count < watch.rule.min_count:
            return None
        best = int(np.argmax(np.where(mask, dets.scores, -1.0)))
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[best])
        return Detection(
            dets.labels[best], float(dets.scores[best]), (x1, y1, x2, y2), int(dets.class_ids[best])
        )

    def update(self, frame: Frame, detections: Detections) -> list[Event]:
        """Feed one processed frame; returns the events it raises (usually none)."""
        events: list[Event] = []
        for watch in self._watches:
            ep = watch.episode
            if not in_schedule(watch.rule.schedule, frame.wall, self._utc):
                if ep.active:
                    ended = self._end(watch, frame.mono, frame.wall, EndReason.OUTSIDE_SCHEDULE)
                    events.append(ended)
                watch.episode, watch.absent_since = _Episode(), None
                continue
            match = self._matches(watch, detections)
            if watch.rule.absent_for_s is not None:
                events.extend(self._absence(watch, frame, match))
            else:
                events.extend(self._presence(watch, frame, match))
        for lifecycle in self._objects:
            if in_schedule(lifecycle.rule.schedule, frame.wall, self._utc):
                steps = lifecycle.update(frame.mono, detections, frame.image)
            else:
                steps = lifecycle.finish(EndReason.OUTSIDE_SCHEDULE)
            for step in steps:
                events.append(self._object_event(lifecycle, step, frame.mono, frame.wall))
        return events

    def _presence(self, watch: _Watch, frame: Frame, match: Detection | None) -> list[Event]:
        """Presence and count rules: an episode while enough matching objects are seen."""
        ep, rule = watch.episode, watch.rule
        if match is None:
            ep.streak = 0
            if not ep.active:
                ep.peak_score = 0.0
            elif frame.mono - ep.last_seen_mono >= rule.end_after_s:
                return [self._end(watch, frame.mono, frame.wall, EndReason.GONE)]
            return []
        ep.streak += 1
        ep.last_seen_mono = frame.mono
        ep.last_match = match
        ep.peak_score = max(ep.peak_score, match.score)
        if ep.active or ep.streak < rule.min_frames or frame.mono < watch.cooldown_until:
            return []
        ep.active = True
        ep.started_mono = frame.mono
        extra: dict[str, object] = {"count": watch.count} if rule.min_count > 1 else {}
        event = self._event(
            watch, Phase.START, match, mono=frame.mono, wall=frame.wall, extra=extra
        )
        ep.start_id = event.id
        return [event]

    def _absence(self, watch: _Watch, frame: Frame, match: Detection | None) -> list[Event]:
        """Absence rules: an episode while no matching object has been seen for a while."""
        ep, rule = watch.episode, watch.rule
        assert rule.absent_for_s is not None
        if match is not None:
            watch.absent_since = None
            if ep.active:
                return [self._end(watch, frame.mono, frame.wall, EndReason.PRESENT)]
            return []
        if watch.absent_since is None:
            watch.absent_since = frame.mono
        ep.last_seen_mono = frame.mono  # the absence was last observed now
        absent = frame.mono - watch.absent_since
        if ep.active or absent < rule.absent_for_s or frame.mono < watch.cooldown_until:
            return []
        # No object to show: the event names the awaited label and the watched area.
        area = (0.0, 0.0, 1.0, 1.0)
        if watch.zone is not None:
            low, high = watch.zone.min(axis=0), watch.zone.max(axis=0)
            area = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
        ep.last_match = Detection(rule.labels[0], 0.0, area, -1)
        ep.active, ep.started_mono = True, frame.mono
        event = self._event(
            watch,
            Phase.START,
            ep.last_match,
            mono=frame.mono,
            wall=frame.wall,
            extra={"absent_s": round(absent, 3)},
        )
        ep.start_id = event.id
        return [event]

    def finish(
        self, mono: float, wall: float, reason: EndReason = EndReason.SOURCE_ENDED
    ) -> list[Event]:
        """End every open episode; ``reason`` becomes the events' ``end_reason``."""
        events = [
            self._end(w, mono, wall, reason=reason) for w in self._watches if w.episode.active
        ]
        for lifecycle in self._objects:
            for step in lifecycle.finish(reason):
                events.append(self._object_event(lifecycle, step, mono, wall))
        return events

    def _object_event(
        self, lifecycle: ObjectLifecycle, step: Transition, mono: float, wall: float
    ) -> Event:
        rule = lifecycle.rule
        key = (rule.name, step.track_id)
        extra = dict(step.extra)
        if step.phase is not Phase.START:
            start_id, _ = (
                self._start_ids.pop(key) if step.phase is Phase.END else self._start_ids[key]
            )
            extra["start_id"] = start_id
        watch = _Watch(rule, frozenset(rule.labels), None)
        event = self._event(watch, step.phase, step.detection, mono=mono, wall=wall, extra=extra)
        event = replace(event, track_id=step.track_id)
        if step.phase is Phase.START:
            self._start_ids[key] = (event.id, mono)
        return event

    @property
    def context(self) -> EventContext:
        """What new events carry (device, model, config version)."""
        return self._ctx

    @context.setter
    def context(self, ctx: EventContext) -> None:
        # A new config version or model with the same rules: open episodes carry on.
        self._ctx = ctx

    @property
    def busy(self) -> bool:
        """Whether any rule is watching something: an open or building episode, or a live
        track. A motion gate keeps detecting while this holds (a still person makes no
        motion but must not be ended)."""
        return any(w.episode.active or w.episode.streak for w in self._watches) or any(
            o.live for o in self._objects
        )

    @property
    def tracks(self) -> list[tuple[int, str, tuple[float, float, float, float]]]:
        """``(track id, label, normalised box)`` of the tracks seen on the last frame, of
        every per-object rule (a live view draws them)."""
        return [(t.track_id, t.label, t.box) for o in self._objects for t in o.tracks]

    @property
    def active(self) -> list[str]:
        """Names of the rules with an open episode."""
        names = [w.rule.name for w in self._watches if w.episode.active]
        return names + [o.rule.name for o in self._objects if o.open_tracks]

    def _end(self, watch: _Watch, mono: float, wall: float, reason: EndReason) -> Event:
        ep = watch.episode
        assert ep.last_match is not None  # an active episode has seen a match
        match = Detection(ep.last_match.label, ep.peak_score, ep.last_match.bbox, 0)
        extra = {
            "start_id": ep.start_id,
            "duration_s": round(ep.last_seen_mono - ep.started_mono, 3),
            "end_reason": reason,
        }
        watch.episode = _Episode()
        watch.cooldown_until = mono + watch.rule.cooldown_s
        return self._event(watch, Phase.END, match, mono=mono, wall=wall, extra=extra)

    def _event(
        self,
        watch: _Watch,
        phase: Phase,
        match: Detection,
        *,
        mono: float,
        wall: float,
        extra: dict[str, object] | None = None,
    ) -> Event:
        band = watch.rule.review_band
        return Event(
            id=new_ulid(wall),
            device=self._ctx.device,
            camera=self.camera,
            rule=watch.rule.name,
            phase=phase,
            severity=watch.rule.severity,
            wall=wall,
            mono=mono,
            label=match.label,
            score=match.score,
            bbox=match.bbox,
            model=self._ctx.model,
            config_version=self._ctx.config_version,
            zone=watch.rule.zone,
            review=band is not None and band[0] <= match.score < band[1],
            extra=dict(extra or {}),
        )
