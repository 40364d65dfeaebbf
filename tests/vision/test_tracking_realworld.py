"""Per-object events on the real clips (../shared/realworld), with the default SSD v2 model and
the shared SSD v1 model.

Expectations come from MANIFEST.md. Each clip is detected once per model (every frame, at a
low threshold) and replayed through rule engines with its own frames (the tracker looks at
the pixels of lost tracks) at the detector thresholds, frame rates and motion gating a user
would run: ``detector.score_threshold`` 0.5 is the default, the one ``python -m simulator
replay`` uses with a config that does not set it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest

from edge_app.config import DetectorConfig, MotionConfig, RuleConfig
from edge_app.domain import Detections, Event, Phase
from edge_app.vision import TFLiteDetector, open_detector
from tests.vision.clips import detect_every_frame, person_rule, replay, spans

pytestmark = pytest.mark.realworld

V1_LABELS = Path(__file__).resolve().parents[2] / "models" / "labels" / "coco_labels_v1.txt"
ONE_BY_ONE = "one-by-one-person-detection.mp4"
# MANIFEST: one person at these frames, grouped by visit (six visits, one person at a time) ...
VISITS = ((100,), (300, 400), (600,), (800,), (1000, 1100), (1300,))
# ... and nobody at these.
EMPTY = (0, 500, 900)
Clips = Callable[[str, str], list[Detections]]


@pytest.fixture(scope="module")
def detect(v1_model: Path, default_model: Path, realworld: Path) -> Iterator[Clips]:
    """``(model, clip) -> detections of every frame``; model ``v1`` or ``v2`` (the default)."""
    config = DetectorConfig(model=str(default_model), score_threshold=0.1)
    with (
        TFLiteDetector(v1_model, V1_LABELS, threads=2, score_threshold=0.1) as v1,
        open_detector(config) as v2,
    ):

        @cache
        def run(model: str, name: str) -> list[Detections]:
            return detect_every_frame(v1 if model == "v1" else v2, realworld / "videos" / name)

        yield run


# (model, detector threshold, frame step, motion gating): the case first (default
# model, default threshold, every frame of the 10 fps clip), then lower thresholds (weak
# detections reach the tracker), 5 fps, and the motion gate.
CASES = [
    ("v2", 0.5, 1, False),
    ("v2", 0.3, 2, False),
    ("v2", 0.1, 1, False),
    ("v2", 0.5, 1, True),
    ("v1", 0.5, 1, False),
    ("v1", 0.3, 2, False),
    ("v1", 0.3, 1, True),
]


@pytest.mark.parametrize(("model", "threshold", "step", "gated"), CASES)
def test_one_start_and_one_end_per_visit(
    detect: Clips, realworld: Path, model: str, threshold: float, step: int, gated: bool
) -> None:
    """The issue's rule gives exactly one start and one end per visit, each covering its
    visit's occupied frames and none of the empty ones: SSD v2 scores the second and third
    visitors (dark clothes, seen from behind) below 0.3 for many seconds, and before the
    tracker kept lost tracks on evidence it split each of them into two sequences."""
    events = replay(
        realworld / "videos" / ONE_BY_ONE,
        detect(model, ONE_BY_ONE),
        [person_rule()],
        fps=10.0,
        threshold=threshold,
        step=step,
        motion=MotionConfig() if gated else None,
    )
    starts = [e for e in events if e.phase is Phase.START]
    ends = [e for e in events if e.phase is Phase.END]
    visits = spans(events, 10.0)
    assert len(starts) == len(ends) == len(VISITS), visits
    assert {e.extra["start_id"] for e in ends} == {e.id for e in starts}
    assert len({e.track_id for e in starts}) == len(starts)
    for (_, end), (start, _) in itertools.pairwise(visits):
        assert end < start, visits  # one person at a time: sequences never overlap
    for empty in EMPTY:
        assert not any(a <= empty <= b for a, b in visits), (empty, visits)
    for (a, b), occupied in zip(visits, VISITS, strict=True):
        assert all(a - 5 <= f <= b + 5 for f in occupied), (occupied, visits)


def test_presence_rule_agrees_with_v1(detect: Clips, realworld: Path) -> None:
    """With SSD v1 the whole-rule presence episode sees the same visits (a cross-check of
    the per-object sequences by a rule that has no tracker)."""
    rules = [person_rule(), person_rule(name="presence", per_object=False)]
    path = realworld / "videos" / ONE_BY_ONE
    events = replay(path, detect("v1", ONE_BY_ONE), rules, fps=10.0, threshold=0.3, step=2)
    per_object = [e for e in events if e.rule == "person" and e.phase is Phase.START]
    presence = [e for e in events if e.rule == "presence" and e.phase is Phase.START]
    assert len(per_object) == len(presence) == len(VISITS)


def test_embedding_reidentification_gives_the_same_visits(detect: Clips, realworld: Path) -> None:
    """``tracking.reid: embedding`` with the real MobileNet v1 extractor: one per visit too."""
    model = realworld / "models" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    events = replay(
        realworld / "videos" / ONE_BY_ONE,
        detect("v2", ONE_BY_ONE),
        [person_rule()],
        fps=10.0,
        tracking={"reid": "embedding", "embedding_model": str(model)},
    )
    assert sum(e.phase is Phase.START for e in events) == len(VISITS)
    assert sum(e.phase is Phase.END for e in events) == len(VISITS)


@pytest.mark.parametrize("model", ["v1", "v2"])
def test_three_walkers_three_stable_tracks(detect: Clips, realworld: Path, model: str) -> None:
    name = "face-demographics-walking-and-pause.gif"
    events = replay(
        realworld / "videos" / name, detect(model, name), [person_rule()], fps=12.5, threshold=0.3
    )
    starts = [e for e in events if e.phase is Phase.START]
    assert len(starts) == 3  # MANIFEST: 3 persons in every frame
    ends = [e for e in events if e.phase is Phase.END]
    assert {e.extra["end_reason"] for e in ends} == {"source ended"}  # nobody lost mid-clip
    assert len(events) <= 3 * 2 + 3  # no event storm: start, end and at most one update each


@pytest.mark.parametrize("model", ["v1", "v2"])
def test_zone_rule_follows_the_worker(detect: Clips, realworld: Path, model: str) -> None:
    """The worker walks from the middle of the floor into its left part (x < 0.45): the right
    zone's sequence starts, reports leaving, ends; the left zone's starts and stays open. One
    track throughout, one sequence per zone."""
    name = "worker-zone-detection.gif"
    zones = [
        {"name": "left", "polygon": [[0, 0], [0.45, 0], [0.45, 1], [0, 1]]},
        {"name": "right", "polygon": [[0.45, 0], [1, 0], [1, 1], [0.45, 1]]},
    ]
    rules = [
        person_rule(name="left", zone="left", end_after_s=1.0),
        person_rule(name="right", zone="right", end_after_s=1.0),
    ]
    events = replay(
        realworld / "videos" / name,
        detect(model, name),
        rules,
        fps=16.67,
        threshold=0.3,
        zones=zones,
    )
    by_rule = {name: [e for e in events if e.rule == name] for name in ("left", "right")}

    def steps(rule: str) -> list[tuple[Phase, object]]:
        return [
            (e.phase, e.extra.get("update_reason") or e.extra.get("end_reason"))
            for e in by_rule[rule]
            if e.phase is not Phase.UPDATE
            or (model == "v1" and e.extra["update_reason"] != "better snapshot")
        ]

    assert steps("left") == [(Phase.START, None), (Phase.END, "source ended")]
    right = [(Phase.START, None), (Phase.END, "left zone")]
    if model == "v1":  # v2's anchor also walks along the zone's edge for a while
        right.insert(1, (Phase.UPDATE, "left zone"))
    assert steps("right") == right
    assert by_rule["left"][0].mono > by_rule["right"][0].mono  # entered after being seen right
    assert {e.track_id for e in events} == {by_rule["right"][0].track_id}
    # The helmet's known `sports ball` false positive is filtered out by label.
    assert {e.label for e in events} == {"person"}


def test_motion_gating_keeps_every_enter_and_leave(detect: Clips, realworld: Path) -> None:
    """Gated replay (detections only where the gate says so) finds every start and end that
    always-detect finds, within one second, while running the detector on fewer frames."""
    path = realworld / "videos" / ONE_BY_ONE
    rules = [person_rule(), person_rule(name="presence", per_object=False)]
    found = detect("v1", ONE_BY_ONE)
    always = replay(path, found, rules, fps=10.0, threshold=0.3, step=2)
    gated = replay(path, found, rules, fps=10.0, threshold=0.3, step=2, motion=MotionConfig())

    def marks(events: list[Event]) -> list[tuple[str, Phase, float]]:
        return [(e.rule, e.phase, e.mono) for e in events if e.phase is not Phase.UPDATE]

    want, got = marks(always), marks(gated)
    assert len(want) >= 12  # 6 visits x (start, end), two rules
    for rule, phase, mono in want:
        assert any(r == rule and p == phase and abs(m - mono) <= 1.0 for r, p, m in got), (
            rule,
            phase,
            mono,
            got,
        )
    assert len(got) == len(want)  # and nothing extra


def test_bottle_count_rule_follows_the_manifest(detect: Clips, realworld: Path) -> None:
    """MANIFEST: 3 bottles at frame 0, 2 at 300, 3 at 500, 2 at 700. A count rule (>= 3
    bottles, SSD v1 scores bottles around 0.5) is on exactly where there are three."""
    fps, name = 29.83, "bottle-detection.mp4"
    rule = RuleConfig(
        name="three-bottles",
        labels=["bottle"],
        min_score=0.45,
        min_count=3,
        min_frames=3,
        end_after_s=1.0,
    )
    events = replay(
        realworld / "videos" / name, detect("v1", name), [rule], fps=fps, threshold=0.3, step=5
    )
    ends = {e.extra["start_id"]: e for e in events if e.phase is Phase.END}
    episodes = [
        (s.mono * fps, (s.mono + float(ends[s.id].extra["duration_s"])) * fps)
        for s in events
        if s.phase is Phase.START
    ]
    assert all(e.extra["count"] >= 3 for e in events if e.phase is Phase.START)
    assert episodes[0][0] <= 15  # three bottles from the first frames
    for frame, three in ((0, True), (300, False), (500, True), (700, False)):
        on = any(a - 15 <= frame <= b + 15 for a, b in episodes)
        assert on is three, (frame, episodes)
