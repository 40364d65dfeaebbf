"""Per-object events against the exact ground truth of generated scenes (pulled default model).

Several seeded scenes are generated, detected frame by frame and replayed through per-object
rules. A start event is a true positive when it pairs one-to-one with a truth visit of the same
label whose frames contain the event's start; precision = paired starts / starts, recall =
paired visits / visits. Both must be at least 0.95 over all scenes together.

The encounter scenes (two people crossing, one walking behind a pillar) check identities
frame by frame against the truth, with the default model and with SSD v1 (realworld).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.config import CameraConfig, DetectorConfig, RuleConfig, TrackingConfig
from edge_app.domain import Event, Frame, ModelRef, Phase
from edge_app.vision import TFLiteDetector, open_detector
from edge_app.vision.appearance import open_appearance
from edge_app.vision.evidence import TrackEvidence
from edge_app.vision.rules import EventContext, RuleEngine
from edge_app.vision.tracker import Tracker, iou_matrix
from simulator.encounters import KINDS, generate_encounter
from simulator.scene import SceneTruth, generate_scene
from tests.vision.clips import frames, person_rule, replay

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


# -- crossings and occlusions (simulator.encounters) -----------------------------------------


@pytest.fixture(scope="module")
def v1_detector(v1_model: Path) -> Iterator[TFLiteDetector]:
    labels = Path(__file__).resolve().parents[2] / "models" / "labels" / "coco_labels_v1.txt"
    with TFLiteDetector(v1_model, labels, threads=2, score_threshold=0.3) as opened:
        yield opened


def _identities(
    detector: TFLiteDetector, clip: Path, truth: SceneTruth
) -> tuple[dict[int, set[int]], list[Event]]:
    """Which track ids the tracker gave each person (matched by IoU >= 0.5 on frames where at
    least half of them shows), and the events of the issue's per-object person rule, with
    the detector's default threshold (0.5)."""
    tracking = TrackingConfig()
    tracker = Tracker(
        high_score=0.5,
        low_score=tracking.low_score,
        max_age_s=3.0,
        evidence=TrackEvidence(tracking, open_appearance(tracking)),
        max_lost_s=tracking.max_lost_s,
        min_hits=2,
    )
    ids: dict[int, set[int]] = {o.id: set() for o in truth.objects}
    found = []
    for index, image in frames(clip):
        people = detector.detect(image)
        keep = np.array([label == "person" for label in people.labels], bool)
        people = people.select(keep & (people.scores >= 0.5))
        found.append(people)
        tracks, _ = tracker.update(index / truth.fps, people, image)
        seen = [t for t in tracks if t.seen_now and t.established]
        shown = [b for b in truth.boxes[index] if b.visible >= 0.5]
        if not seen or not shown:
            continue
        overlap = iou_matrix(
            np.array([b.bbox for b in shown], np.float32),
            np.array([t.box for t in seen], np.float32),
        )
        for row, box in zip(overlap, shown, strict=True):
            if row.max() >= 0.5:
                ids[box.id].add(seen[int(row.argmax())].track_id)
    events = replay(clip, found, [person_rule()], fps=truth.fps, threshold=0.5)
    return ids, events


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", ["v2", "v1"])
def test_people_keep_one_identity_through_crossings_and_occlusions(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, model: str
) -> None:
    """Two people passing each other (the far one hidden by the near one) and one walking
    behind a pillar: each person is one track from the first frame to the last (no swap, no
    split, no merge), one start each and no other. Without evidence, re-identification and
    the matching cascade the hidden person came back as a new track, or took the other's."""
    detector = request.getfixturevalue("detector" if model == "v2" else "v1_detector")
    for seed in SEEDS:
        clip = tmp_path / f"{kind}{seed}.mp4"
        truth = generate_encounter(clip, tmp_path / f"{kind}{seed}.json", kind=kind, seed=seed)
        ids, events = _identities(detector, clip, truth)
        assert all(len(tracks) == 1 for tracks in ids.values()), (seed, ids)
        assert len(set().union(*ids.values())) == len(ids), (seed, ids)  # nobody merged
        starts = [e for e in events if e.phase is Phase.START]
        assert len(starts) == len(truth.objects), (seed, [(e.track_id, e.mono) for e in starts])
        assert {e.extra["end_reason"] for e in events if e.phase is Phase.END} == {"source ended"}
