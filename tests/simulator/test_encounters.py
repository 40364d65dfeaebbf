"""Crossing and occlusion scenes: the truth says who is where and how much of them shows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from simulator.__main__ import main as simulator_main
from simulator.encounters import KINDS, generate_encounter
from simulator.scene import SceneError, SceneTruth

SIZE = (320, 180)


@pytest.fixture(scope="module", params=KINDS)
def encounter(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, SceneTruth]:
    kind = str(request.param)
    out = tmp_path_factory.mktemp(kind)
    truth = generate_encounter(out / "e.mp4", out / "e.json", kind=kind, seconds=6, size=SIZE)
    return kind, out, truth


def test_truth_round_trips_and_matches_the_clip(encounter: tuple[str, Path, SceneTruth]) -> None:
    _, out, truth = encounter
    assert SceneTruth.load(out / "e.json") == truth
    capture = cv2.VideoCapture(str(out / "e.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == truth.frames == 60
    assert truth.size == SIZE


def test_every_person_walks_the_whole_clip(encounter: tuple[str, Path, SceneTruth]) -> None:
    kind, _, truth = encounter
    assert [o.label for o in truth.objects] == ["person"] * (2 if kind == "crossing" else 1)
    for o in truth.objects:
        assert (o.enter_frame, o.leave_frame) == (0, truth.frames)
    for boxes in truth.boxes:
        assert sorted(b.id for b in boxes) == [o.id for o in truth.objects]
        for b in boxes:
            x1, y1, x2, y2 = b.bbox
            assert 0.0 <= x1 < x2 <= 1.0
            assert 0.0 <= y1 < y2 <= 1.0
            assert 0.0 <= b.visible <= 1.0


def test_someone_is_hidden_for_a_while_and_fully_seen_otherwise(
    encounter: tuple[str, Path, SceneTruth],
) -> None:
    kind, _, truth = encounter
    hidden_id = 1  # the far walker of a crossing (pasted first), the occlusion's only one
    shown = [next(b.visible for b in boxes if b.id == hidden_id) for boxes in truth.boxes]
    hidden = [i for i, v in enumerate(shown) if v < 0.5]
    assert hidden, shown
    # One stretch in mid-clip, with (nearly) full views on both sides of it.
    assert hidden == list(range(hidden[0], hidden[-1] + 1))
    assert 0.2 * truth.frames < hidden[0]
    assert hidden[-1] < 0.8 * truth.frames
    assert max(shown[: hidden[0]]) > 0.9
    assert max(shown[hidden[-1] :]) > 0.9
    if kind == "occlusion":
        assert min(shown) == 0.0  # fully behind the pillar
    else:
        # The near one is never covered: while their boxes overlap it shows whole.
        overlapping = [
            boxes
            for boxes in truth.boxes
            if boxes[0].bbox[0] < boxes[1].bbox[2] and boxes[1].bbox[0] < boxes[0].bbox[2]
        ]
        assert overlapping
        assert {next(b.visible for b in boxes if b.id == 2) for boxes in overlapping} == {1.0}
        # They do pass each other: the far one starts on the other side.
        first, last = truth.boxes[0], truth.boxes[-1]
        assert (first[0].bbox[0] < first[1].bbox[0]) != (last[0].bbox[0] < last[1].bbox[0])


def test_visible_share_counts_the_pixels_that_show(tmp_path: Path) -> None:
    """The occluded walker's box shows the pillar where ``visible`` says it is hidden."""
    truth = generate_encounter(tmp_path / "o.mp4", tmp_path / "o.json", kind="occlusion", seed=2)
    capture = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(np.asarray(image, np.int16))
    capture.release()
    width, height = truth.size
    full = next(i for i, boxes in enumerate(truth.boxes) if boxes[0].visible == 1.0)
    gone = next(i for i, boxes in enumerate(truth.boxes) if boxes[0].visible == 0.0)
    bx1, by1, bx2, by2 = truth.boxes[gone][0].bbox
    x1, x2 = round(bx1 * width), round(bx2 * width)
    y1, y2 = round(by1 * height), round(by2 * height)
    # Hidden: the region is the same pillar as on a frame where the walker is elsewhere.
    assert np.abs(frames[gone][y1:y2, x1:x2] - frames[full][y1:y2, x1:x2]).mean() < 8


def test_same_seed_same_scene_and_bad_kind_refused(tmp_path: Path) -> None:
    a = generate_encounter(tmp_path / "a.mp4", tmp_path / "a.json", kind="crossing", seed=5)
    b = generate_encounter(tmp_path / "b.mp4", tmp_path / "b.json", kind="crossing", seed=5)
    assert a == b
    with pytest.raises(SceneError, match="unknown scene kind 'dance'; choose one of"):
        generate_encounter(tmp_path / "c.mp4", tmp_path / "c.json", kind="dance")
    with pytest.raises(SceneError, match="raise --seconds or --fps"):
        generate_encounter(tmp_path / "c.mp4", tmp_path / "c.json", kind="crossing", seconds=1)


def test_scene_command_writes_an_encounter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, truth = tmp_path / "x.mp4", tmp_path / "x.json"
    code = simulator_main(
        ["scene", "--kind", "occlusion", "--out", str(out), "--truth", str(truth), "--seconds", "3"]
    )
    assert code == 0
    assert "#1 person" in capsys.readouterr().out
    assert SceneTruth.load(truth).frames == 30
