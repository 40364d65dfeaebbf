"""Tracker association and the per-object event lifecycle (synthetic detections, frame times)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_app.domain import Detections, Event, Phase
from edge_app.vision.rules import RuleEngine
from edge_app.vision.tracker import Tracker, iou_matrix
from tests.vision.test_rules import CTX, camera, frame, rule

Box = tuple[float, float, float, float]


def dets(*rows: tuple[str, float, Box]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[2] for r in rows], np.float32),
        np.array([r[1] for r in rows], np.float32),
        np.array([0 if r[0] == "person" else 1 for r in rows], np.int32),
        tuple(r[0] for r in rows),
    )


def walker(x: float, score: float = 0.8) -> tuple[str, float, Box]:
    return ("person", score, (x, 0.3, x + 0.1, 0.9))


def test_iou_matrix_table() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 5, 5]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 7, 1, 0], [0, 0.25, 0]], atol=1e-6)
    assert iou_matrix(a, np.empty((0, 4), np.float32)).shape == (2, 0)


def test_moving_objects_keep_their_ids() -> None:
    tracker = Tracker()
    ids = []
    for i in range(10):  # two people walking towards each other, 0.02 per frame
        tracks, _ = tracker.update(i * 0.1, dets(walker(0.1 + 0.02 * i), walker(0.8 - 0.02 * i)))
        ids.append(sorted((round(t.box[0], 2), t.track_id) for t in tracks))
    assert [[tid for _, tid in row] for row in ids] == [[1, 2]] * 10
    assert all(t.hits == 10 for t in tracker.tracks)


def test_a_weak_detection_keeps_a_track_but_cannot_start_one() -> None:
    tracker = Tracker(high_score=0.5, low_score=0.3)
    tracker.update(0.0, dets(walker(0.1)))
    tracks, _ = tracker.update(0.1, dets(walker(0.11, score=0.35), walker(0.7, score=0.4)))
    assert [(t.track_id, t.hits) for t in tracks] == [(1, 2)]


def test_classes_never_share_a_track() -> None:
    tracker = Tracker()
    tracker.update(0.0, dets(walker(0.1)))
    tracks, _ = tracker.update(0.1, dets(("dog", 0.9, (0.1, 0.3, 0.2, 0.9))))
    assert [(t.track_id, t.label, t.seen_now) for t in tracks] == [
        (1, "person", False),
        (2, "dog", True),
    ]


def test_unseen_tracks_expire_by_frame_time_and_ids_are_not_reused() -> None:
    tracker = Tracker(max_age_s=0.5)
    tracker.update(0.0, dets(walker(0.1)))
    assert tracker.update(0.5, dets())[1] == []
    _, removed = tracker.update(0.6, dets())
    assert [t.track_id for t in removed] == [1]
    tracks, _ = tracker.update(0.7, dets(walker(0.1)))
    assert [t.track_id for t in tracks] == [2]


def test_replay_gives_identical_tracks() -> None:
    rng = np.random.default_rng(7)
    seq = [
        dets(*[walker(float(x), float(s)) for x, s in rng.uniform(0, 0.9, (3, 2))])
        for _ in range(30)
    ]

    def replay() -> list[list[tuple[int, Box]]]:
        tracker = Tracker()
        return [
            [(t.track_id, t.box) for t in tracker.update(i / 10, d)[0]] for i, d in enumerate(seq)
        ]

    assert replay() == replay()


def lifecycle(seq: list[Detections], **kw: Any) -> list[tuple[int, Event]]:
    engine = RuleEngine(camera(**kw.pop("cam", {})), [rule(per_object=True, **kw)], CTX)
    out = [(i, e) for i, d in enumerate(seq) for e in engine.update(frame(i), d)]
    last = frame(len(seq) - 1)
    return out + [(len(seq), e) for e in engine.finish(last.mono, last.wall)]


def test_one_frame_false_positive_starts_nothing() -> None:
    seq = [dets()] * 3 + [dets(walker(0.5, 0.95))] + [dets()] * 30
    assert lifecycle(seq, min_frames=2, end_after_s=1.0) == []


def test_low_median_score_is_not_confirmed() -> None:
    # One frame at 0.9 starts a track, then 0.52 keeps it alive: median 0.52 < 0.6, never
    # confirmed although it has min_frames hits.
    seq = [dets(walker(0.5, 0.9))] + [dets(walker(0.5, 0.52))] * 9
    assert lifecycle(seq, min_frames=3, min_score=0.6) == []


def test_each_object_gets_its_own_start_and_end() -> None:
    a, b = walker(0.1), walker(0.7)
    seq = [dets(a)] * 5 + [dets(a, b)] * 10 + [dets(b)] * 30 + [dets()] * 30
    events = lifecycle(seq, min_frames=3, end_after_s=1.0)
    phases = [(i, e.phase, e.track_id) for i, e in events]
    # a: starts at frame 2, last seen 14, gone for > 1 s at frame 25; b: starts 7, ends 55.
    assert phases == [
        (2, Phase.START, 1),
        (7, Phase.START, 2),
        (25, Phase.END, 1),
        (55, Phase.END, 2),
    ]
    ends = [e for _, e in events if e.phase is Phase.END]
    starts = {e.track_id: e.id for _, e in events if e.phase is Phase.START}
    assert all(e.extra["start_id"] == starts[e.track_id] for e in ends)
    assert all(e.extra["end_reason"] == "gone" for e in ends)


def test_zone_leave_updates_then_ends_and_finish_closes_the_rest() -> None:
    zone = {"name": "door", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    # Walks right from x 0.30 by 0.02 a frame (anchor x + 0.05 leaves the zone at frame 8,
    # which counts after min_frames = 3 sightings outside: frame 10), waits outside, then walks
    # back in (anchor back inside from frame 36).
    xs = [0.30 + 0.02 * i for i in range(16)] + [0.60] * 12 + [0.60 - 0.02 * i for i in range(16)]
    seq = [dets(walker(x)) for x in xs]
    events = lifecycle(seq, min_frames=3, end_after_s=1.0, zone="door", cam={"zones": [zone]})
    steps = [
        (i, e.phase, e.extra.get("update_reason") or e.extra.get("end_reason")) for i, e in events
    ]
    assert steps == [
        (2, Phase.START, None),
        (10, Phase.UPDATE, "left zone"),
        (20, Phase.END, "left zone"),  # out for 1 s of frame time
        (36, Phase.START, None),  # back in the zone: a new sequence, same track
        (44, Phase.END, "source ended"),
    ]
    assert events[0][1].zone == "door"
    assert {e.track_id for _, e in events} == {1}


@pytest.mark.parametrize(("gain", "updates"), [(0.05, 0), (0.15, 1)])
def test_better_snapshot_updates_are_rare(gain: float, updates: int) -> None:
    seq = [dets(walker(0.5, 0.7))] * 5 + [dets(walker(0.5, 0.7 + gain))] * 60
    events = lifecycle(seq, min_frames=3)
    kinds = [e.extra.get("update_reason") for _, e in events if e.phase is Phase.UPDATE]
    assert kinds == ["better snapshot"] * updates
    best = next(e for _, e in events if e.phase is Phase.END)
    assert best.score == pytest.approx(0.7 + gain)


def test_a_better_snapshot_update_carries_the_sighting_of_its_own_frame() -> None:
    # 10 fps: start at frame 2 (0.7). A 0.95 flash at frame 6 comes inside the 2 s quiet
    # window, and its frame is gone when the window ends; the update then comes at the first
    # frame that is itself >= 0.1 better than what was reported (0.85 at frame 22), and
    # carries that frame's score and box: the picture the camera loop writes for it.
    seq = (
        [dets(walker(0.5, 0.7))] * 6
        + [dets(walker(0.52, 0.95))]
        + [dets(walker(0.5, 0.72))] * 15
        + [dets(walker(0.54, 0.85))] * 5
    )
    events = lifecycle(seq, min_frames=3)
    updates = [(i, e) for i, e in events if e.phase is Phase.UPDATE]
    assert [(i, e.extra["update_reason"]) for i, e in updates] == [(22, "better snapshot")]
    update = updates[0][1]
    assert update.score == pytest.approx(0.85)
    assert update.bbox == pytest.approx((0.54, 0.3, 0.64, 0.9))
    end = next(e for _, e in events if e.phase is Phase.END)
    assert end.score == pytest.approx(0.95)  # the end still reports the best sighting
