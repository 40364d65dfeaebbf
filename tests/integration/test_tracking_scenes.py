"""Per-object events against the exact ground truth of generated scenes (pulled default model).

Several seeded scenes are generated, detected frame by frame and replayed through per-object
rules. A start event is a true positive when it pairs one-to-one with a truth visit of the same
label whose frames contain the event's start; precision = paired starts / starts, recall =
paired visits / visits. Both must be at least 0.95 over all scenes together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.config import CameraConfig, DetectorConfig, RuleConfig
from edge_app.domain import Event, Frame, ModelRef, Phase
from edge_app.vision import TFLiteDetector, open_detector
from edge_app.vision.rules import EventContext, RuleEngine
from simulator.scene import SceneTruth, generate_scene

pytestmark = pytest.mark.model

SEEDS = (1, 2, 3, 4)
LABELS = ("person", "motorcycle", "cat")
CTX = EventContext("scene", ModelRef("m", "x"), 1)


@pytest.fixture(scope="module")
def detector(default_model: Path) -> Iterator[TFLiteDetector]:
    config = DetectorConfig(
        model="ssd_mobilenet_v2_coco", model_dir=default_model.parent, score_threshold=0.3
    )
    with open_detector(config) as opened:
        yield opened


def _events(detector: TFLiteDetector, clip: Path, truth: SceneTruth) -> list[Event]:
    cam = CameraConfig.model_validate({"name": "yard", "source": {"type": "file", "path": "x"}})
    rules = [
        RuleConfig(
            name=label,
            labels=[label],
            min_score=0.5,
            min_frames=3,
            end_after_s=1.0,
            per_object=True,
        )
        for label in LABELS
    ]
    engine = RuleEngine(cam, rules, CTX)
    capture = cv2.VideoCapture(str(clip))
    events: list[Event] = []
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        t = index / truth.fps
        frame = Frame("yard", index, t, 1_790_000_000 + t, np.asarray(image, np.uint8))
        events += engine.update(frame, detector.detect(frame.image))
        index += 1
    capture.release()
    assert index == truth.frames
    t = (index - 1) / truth.fps
    return events + engine.finish(t, 1_790_000_000 + t)


def _pair(events: list[Event], truth: SceneTruth) -> tuple[int, int, int, int]:
    """(paired starts, starts, paired visits, visits)."""
    starts = [e for e in events if e.phase is Phase.START]
    free = {o.id: o for o in truth.objects}
    paired = 0
    for event in starts:
        frame = round(event.mono * truth.fps)
        # Started within the visit (min_frames after entering, at most end_after_s late).
        match = next(
            (
                o
                for o in free.values()
                if o.label == event.label and o.enter_frame <= frame <= o.leave_frame + 10
            ),
            None,
        )
        if match is not None:
            paired += 1
            del free[match.id]
    return paired, len(starts), len(truth.objects) - len(free), len(truth.objects)


def test_event_precision_and_recall_on_generated_scenes(
    detector: TFLiteDetector, tmp_path: Path
) -> None:
    totals = np.zeros(4, int)
    for seed in SEEDS:
        clip = tmp_path / f"scene{seed}.mp4"
        truth = generate_scene(clip, tmp_path / f"scene{seed}.json", seconds=10.0, seed=seed)
        events = _events(detector, clip, truth)
        totals += _pair(events, truth)
        ends = {e.extra["start_id"] for e in events if e.phase is Phase.END}
        assert ends == {e.id for e in events if e.phase is Phase.START}  # every start ends
    paired_starts, starts, paired_visits, visits = (int(v) for v in totals)
    precision, recall = paired_starts / starts, paired_visits / visits
    print(
        f"per-object events: precision {precision:.3f} ({paired_starts}/{starts}), "
        f"recall {recall:.3f} ({paired_visits}/{visits})"
    )
    assert precision >= 0.95, (paired_starts, starts)
    assert recall >= 0.95, (paired_visits, visits)
