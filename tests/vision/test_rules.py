"""Presence rules: min_frames, end_after_s, zones, labels, review band, finish()."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_app.config import CameraConfig, RuleConfig
from edge_app.domain import Detections, Frame, ModelRef, Phase
from edge_app.vision.geometry import anchor_points, points_in_polygon
from edge_app.vision.rules import EventContext, RuleEngine

CTX = EventContext(device="cam-1", model=ModelRef("m", "abc"), config_version=3)
IMAGE = np.zeros((4, 4, 3), np.uint8)


def camera(**kw: Any) -> CameraConfig:
    return CameraConfig.model_validate(
        {"name": "dock", "source": {"type": "file", "path": "x.mp4"}, **kw}
    )


def rule(**kw: Any) -> RuleConfig:
    base: dict[str, Any] = {"name": "intrusion", "labels": ["person"], "min_frames": 3}
    return RuleConfig.model_validate({**base, **kw})


def dets(*rows: tuple[str, float, tuple[float, float, float, float]]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[2] for r in rows], np.float32),
        np.array([r[1] for r in rows], np.float32),
        np.zeros(len(rows), np.int32),
        tuple(r[0] for r in rows),
    )


def frame(i: int, fps: float = 10.0) -> Frame:
    return Frame("dock", i, 100.0 + i / fps, 1_790_000_000.0 + i / fps, IMAGE)


PERSON = ("person", 0.8, (0.4, 0.4, 0.6, 0.9))


def run(engine: RuleEngine, seq: list[Detections]) -> list[tuple[int, Phase]]:
    out = []
    for i, d in enumerate(seq):
        out += [(i, e.phase) for e in engine.update(frame(i), d)]
    return out


def test_start_after_min_frames_and_end_after_gap() -> None:
    engine = RuleEngine(camera(), [rule(end_after_s=0.25)], CTX)
    seq = [dets(PERSON)] * 5 + [dets()] * 5
    # frames 0,1,2 match -> start at 2; last seen at frame 4 (t=0.4); end at t >= 0.65 -> frame 7
    assert run(engine, seq) == [(2, Phase.START), (7, Phase.END)]


def test_one_frame_flicker_does_not_start() -> None:
    engine = RuleEngine(camera(), [rule()], CTX)
    seq = [dets(PERSON), dets(), dets(PERSON), dets(PERSON), dets(), dets(PERSON)]
    assert run(engine, seq) == []


def test_short_gap_does_not_end_episode() -> None:
    engine = RuleEngine(camera(), [rule(min_frames=1, end_after_s=1.0)], CTX)
    seq = [dets(PERSON), dets(), dets(), dets(PERSON), dets()]
    assert run(engine, seq) == [(0, Phase.START)]
    assert engine.active == ["intrusion"]


def test_event_fields() -> None:
    engine = RuleEngine(camera(), [rule(min_frames=1, severity="high")], CTX)
    (event,) = engine.update(frame(0), dets(("cat", 0.9, (0, 0, 1, 1)), PERSON))
    assert event.label == "person"
    assert event.score == pytest.approx(0.8)
    assert event.bbox == pytest.approx(PERSON[2])
    assert (event.device, event.camera, event.rule) == ("cam-1", "dock", "intrusion")
    assert event.severity.value == "high"
    assert event.config_version == 3
    assert event.seq is None
    assert len(event.id) == 26
    doc = event.to_json()
    assert doc["ts"].endswith("Z")
    assert doc["model"] == {"name": "m", "sha256": "abc"}


def test_labels_and_min_score_filter() -> None:
    engine = RuleEngine(camera(), [rule(min_frames=1, min_score=0.85)], CTX)
    assert engine.update(frame(0), dets(PERSON)) == []  # 0.8 < 0.85
    assert engine.update(frame(1), dets(("dog", 0.99, (0, 0, 1, 1)))) == []
    assert len(engine.update(frame(2), dets(("person", 0.9, (0, 0, 1, 1))))) == 1


def test_zone_uses_bottom_centre() -> None:
    cam = camera(zones=[{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}])
    engine = RuleEngine(cam, [rule(min_frames=1, zone="left")], CTX)
    right = ("person", 0.9, (0.6, 0.1, 0.9, 0.9))
    straddling = ("person", 0.9, (0.1, 0.1, 0.7, 0.9))  # bottom-centre x = 0.4: inside
    assert engine.update(frame(0), dets(right)) == []
    (event,) = engine.update(frame(1), dets(right, straddling))
    assert event.zone == "left"
    assert event.bbox == pytest.approx(straddling[2])


def test_rule_for_other_camera_is_ignored() -> None:
    engine = RuleEngine(camera(), [rule(min_frames=1, camera="gate")], CTX)
    assert engine.update(frame(0), dets(PERSON)) == []


@pytest.mark.parametrize(("score", "review"), [(0.55, True), (0.7, False), (0.5, True)])
def test_review_band(score: float, review: bool) -> None:
    engine = RuleEngine(camera(), [rule(min_frames=1, min_score=0.3, review_band=[0.5, 0.6])], CTX)
    (event,) = engine.update(frame(0), dets(("person", score, (0, 0, 1, 1))))
    assert event.review is review


def test_finish_ends_open_episodes_with_peak_score() -> None:
    engine = RuleEngine(camera(), [rule(min_frames=1)], CTX)
    engine.update(frame(0), dets(("person", 0.6, (0, 0, 1, 1))))
    engine.update(frame(1), dets(("person", 0.95, (0, 0, 1, 1))))
    (end,) = engine.finish(200.0, 1_790_000_100.0)
    assert end.phase is Phase.END
    assert end.score == pytest.approx(0.95)
    assert end.extra["end_reason"] == "source ended"
    assert engine.finish(201.0, 1_790_000_101.0) == []


@pytest.mark.parametrize(
    ("point", "inside"),
    [((0.5, 0.5), True), ((0.05, 0.05), False), ((0.95, 0.5), False), ((0.3, 0.7), True)],
)
def test_points_in_polygon(point: tuple[float, float], inside: bool) -> None:
    # a diamond around the centre
    poly = np.array([[0.5, 0.1], [0.9, 0.5], [0.5, 0.9], [0.1, 0.5]], np.float32)
    result = points_in_polygon(np.array([point], np.float32), poly)
    assert result.tolist() == [inside]


def test_anchor_points() -> None:
    xyxy = np.array([[0.2, 0.1, 0.4, 0.9]], np.float32)
    assert anchor_points(xyxy)[0].tolist() == pytest.approx([0.3, 0.9])
