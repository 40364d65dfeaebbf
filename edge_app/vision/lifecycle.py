"""Per-object event lifecycle: one start / update* / end sequence per tracked object.

For a rule with ``per_object: true`` each confirmed track of a matching label gets its own
event sequence:

* ``start`` once the track is confirmed: at least ``min_frames`` hits and a median score over
  its recent frames of at least ``min_score`` (this is what suppresses one-frame false
  positives), with its anchor inside the rule's zone when it has one;
* ``update`` when the track leaves or re-enters the zone (for ``min_frames`` sightings), or
  when its sighting in the current frame scores clearly better than the last one reported
  (a better snapshot: the event carries that sighting and the camera loop writes this frame
  as the update's own snapshot), at most once per ``UPDATE_EVERY_S`` of frame time;
* ``end`` once the tracker drops the track: no detection and no other evidence that the object
  is still there (``cameras[].tracking``: its region unchanged, motion) for ``end_after_s``,
  or ``tracking.max_lost_s`` without a detection; or once it has stayed out of the zone for
  ``end_after_s``.

Everything is driven by frame timestamps, so a replay yields the same events.
"""

from __future__ import annotations

__all__ = ["ObjectLifecycle", "Transition"]

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edge_app.config import RuleConfig, TrackingConfig
from edge_app.domain import Detection, Detections, EndReason, Phase, UpdateReason
from edge_app.vision.appearance import Appearance
from edge_app.vision.evidence import TrackEvidence
from edge_app.vision.geometry import points_in_polygon
from edge_app.vision.tracker import Track, Tracker

UPDATE_EVERY_S = 2.0
"""Frame-time seconds between two ``update`` events of one track (no event storms)."""
BETTER_BY = 0.1
"""Score gain over the last reported best that counts as a better snapshot."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One lifecycle step of one track: the phase, what to report, and extra event fields."""

    phase: Phase
    track_id: int
    detection: Detection
    extra: dict[str, object]


@dataclass(slots=True)
class _State:
    confirmed: bool = False
    started_mono: float = 0.0
    in_zone: bool = True
    out_since: float | None = None
    last_update_mono: float = 0.0
    reported_best: float = 0.0
    flips: int = 0  # consecutive sightings on the other side of the zone edge
    entered: float | None = None  # when the (unconfirmed) track was last seen entering the zone
    side: float = 0.0  # which side of the rule's line the anchor was last on (sign)
    anchor: tuple[float, float] | None = None


class ObjectLifecycle:
    """The per-object lifecycle of one rule on one camera. Not thread-safe.

    ``tracking`` (the camera's) sets the tracker's weak floor and which evidence keeps lost
    tracks alive; ``reid`` is the camera's re-identification descriptor (None: the tracker
    uses detections only, as without pixels).
    """

    def __init__(
        self,
        rule: RuleConfig,
        zone: NDArray[np.float32] | None,
        tracking: TrackingConfig | None = None,
        reid: Appearance | None = None,
    ) -> None:
        self.rule = rule
        self._labels = frozenset(rule.labels)
        self._zone = zone
        tracking = tracking or TrackingConfig()
        self._tracker = Tracker(
            high_score=rule.min_score,
            low_score=min(tracking.low_score, rule.min_score),
            max_age_s=rule.end_after_s,
            evidence=TrackEvidence(tracking, reid) if reid is not None else None,
            max_lost_s=tracking.max_lost_s,
            min_hits=rule.min_frames,
        )
        self._states: dict[int, _State] = {}

    @property
    def live(self) -> bool:
        """Whether the tracker holds any track (seen within ``end_after_s``)."""
        return bool(self._tracker.tracks)

    @property
    def tracks(self) -> list[Track]:
        """The tracks matched on the last frame (what a live view labels with track ids)."""
        return [t for t in self._tracker.tracks if t.seen_now]

    @property
    def open_tracks(self) -> list[int]:
        """Ids of the tracks with a started, not yet ended event sequence."""
        return [i for i, s in self._states.items() if s.confirmed]

    def update(
        self, mono: float, detections: Detections, image: NDArray[np.uint8] | None = None
    ) -> list[Transition]:
        """Feed one processed frame (``mono`` seconds, ``image`` its BGR pixels or None);
        returns its lifecycle steps."""
        mask = np.fromiter((lb in self._labels for lb in detections.labels), bool, len(detections))
        if not mask.all():
            detections = Detections(
                detections.xyxy[mask],
                detections.scores[mask],
                detections.class_ids[mask],
                tuple(lb for lb, m in zip(detections.labels, mask, strict=True) if m),
            )
        tracks, removed = self._tracker.update(mono, detections, image)
        out: list[Transition] = []
        for track in removed:
            state = self._states.pop(track.track_id, None)
            if state is not None and state.confirmed:
                out.append(self._end(track, state, EndReason.GONE))
        seen = [t for t in tracks if t.seen_now]
        inside = self._inside(seen)
        for track, in_zone in zip(seen, inside, strict=True):
            state = self._states.setdefault(track.track_id, _State(in_zone=in_zone))
            if self.rule.line is not None:
                out.extend(self._crossing(track, state))
            else:
                out.extend(self._step(mono, track, state, in_zone))
        return out

    def _crossing(self, track: Track, state: _State) -> list[Transition]:
        """Line rules: one instant ``start`` per crossing in the configured direction, by a
        track confirmed like any other (``min_frames`` hits, median score)."""
        assert self.rule.line is not None
        (ax, ay), (bx, by) = self.rule.line
        px, py = (track.box[0] + track.box[2]) / 2, track.box[3]
        # Image y points down, so a negative cross product is on the left of A -> B.
        side = float(np.sign((bx - ax) * (py - ay) - (by - ay) * (px - ax)))
        before, previous = state.side, state.anchor
        state.anchor = (px, py)
        if side == 0:
            return []
        state.side = side
        if before in (0, side) or previous is None:
            return []
        if not _segments_cross(previous, (px, py), (ax, ay), (bx, by)):
            return []  # passed beside the line's ends, not through it
        direction = "left_to_right" if side > 0 else "right_to_left"
        confirmed = track.hits >= self.rule.min_frames and track.median_score >= self.rule.min_score
        if not confirmed or self.rule.direction not in ("both", direction):
            return []
        return [self._transition(Phase.START, track, {"crossed": direction, "instant": True})]

    def finish(self, reason: EndReason) -> list[Transition]:
        """End every open sequence (source ended, config changed) with ``reason``."""
        out = [
            self._end(t, self._states[t.track_id], reason)
            for t in self._tracker.tracks
            if t.track_id in self._states and self._states[t.track_id].confirmed
        ]
        self._states.clear()
        return out

    def _inside(self, tracks: list[Track]) -> list[bool]:
        if self._zone is None or not tracks:
            return [True] * len(tracks)
        anchors = np.array([((t.box[0] + t.box[2]) / 2, t.box[3]) for t in tracks], np.float32)
        return [bool(v) for v in points_in_polygon(anchors, self._zone)]

    def _step(self, mono: float, track: Track, state: _State, in_zone: bool) -> list[Transition]:
        rule = self.rule
        if not state.confirmed:
            state.in_zone = in_zone
            state.entered = (
                (state.entered if state.entered is not None else mono) if in_zone else None
            )
            dwelt = state.entered is not None and mono - state.entered >= rule.dwell_s
            if dwelt and track.hits >= rule.min_frames and track.median_score >= rule.min_score:
                state.confirmed = True
                state.started_mono = state.last_update_mono = mono
                state.reported_best = track.best_score
                return [self._transition(Phase.START, track, {})]
            return []
        # A zone change counts once it held for min_frames sightings: an anchor walking along
        # the edge would otherwise flip in and out every frame.
        state.flips = state.flips + 1 if in_zone != state.in_zone else 0
        if state.flips >= rule.min_frames:
            state.flips = 0
            state.in_zone = in_zone
            state.out_since = None if in_zone else mono
            state.last_update_mono = mono
            change = UpdateReason.ENTERED_ZONE if in_zone else UpdateReason.LEFT_ZONE
            return [self._transition(Phase.UPDATE, track, {"update_reason": change})]
        if state.out_since is not None and mono - state.out_since >= rule.end_after_s:
            del self._states[track.track_id]
            return [self._end(track, state, EndReason.LEFT_ZONE)]
        # A better snapshot is reported on a frame whose own sighting is clearly better than the
        # last one reported, and the event carries that sighting: the camera loop writes this
        # frame as the update's snapshot, so the event's box and score are the picture's.
        current = track.scores[-1]
        if (
            current >= state.reported_best + BETTER_BY
            and mono - state.last_update_mono >= UPDATE_EVERY_S
        ):
            state.reported_best = current
            state.last_update_mono = mono
            sighting = Detection(track.label, current, track.box, track.class_id)
            extra: dict[str, object] = {"update_reason": UpdateReason.BETTER_SNAPSHOT}
            return [Transition(Phase.UPDATE, track.track_id, sighting, extra)]
        return []

    def _end(self, track: Track, state: _State, reason: EndReason) -> Transition:
        extra = {
            "duration_s": round(track.last_mono - state.started_mono, 3),
            "end_reason": reason,
        }
        return self._transition(Phase.END, track, extra)

    @staticmethod
    def _transition(phase: Phase, track: Track, extra: dict[str, object]) -> Transition:
        # The best-scoring sighting stands for the object (its box is the snapshot crop).
        best = Detection(track.label, track.best_score, track.best_box, track.class_id)
        return Transition(phase, track.track_id, best, extra)


def _segments_cross(
    p1: tuple[float, float],
    p2: tuple[float, float],
    q1: tuple[float, float],
    q2: tuple[float, float],
) -> bool:
    """Whether segment p1-p2 crosses segment q1-q2 (touching counts)."""

    def orient(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 <= 0 and d3 * d4 <= 0
