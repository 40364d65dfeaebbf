"""The synthetic scene: a playable clip whose ground truth matches its pixels."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from simulator.__main__ import main as simulator_main
from simulator.scene import SceneError, SceneTruth, generate_scene

SIZE = (192, 108)
SECONDS, FPS = 4.0, 5.0


def _frames(video: Path) -> list[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened(), f"OpenCV cannot open {video}"
    frames: list[npt.NDArray[np.uint8]] = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(np.asarray(frame, dtype=np.uint8))
    finally:
        capture.release()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SceneTruth]:
    directory = tmp_path_factory.mktemp("scene")
    video, truth_file = directory / "scene.mp4", directory / "scene.json"
    truth = generate_scene(video, truth_file, seconds=SECONDS, fps=FPS, size=SIZE, seed=3)
    return video, truth_file, truth


def test_clip_has_expected_frame_count_and_size(scene: tuple[Path, Path, SceneTruth]) -> None:
    video, _, truth = scene
    frames = _frames(video)
    assert truth.frames == round(SECONDS * FPS)
    assert len(frames) == truth.frames
    assert {f.shape for f in frames} == {(SIZE[1], SIZE[0], 3)}
    assert truth.size == SIZE


def test_truth_file_round_trips(scene: tuple[Path, Path, SceneTruth]) -> None:
    _, truth_file, truth = scene
    assert SceneTruth.load(truth_file) == truth


def test_boxes_are_normalised_and_match_visits(scene: tuple[Path, Path, SceneTruth]) -> None:
    _, _, truth = scene
    assert len(truth.objects) >= 2
    assert len(truth.boxes) == truth.frames
    by_id = {o.id: o for o in truth.objects}
    for index, boxes in enumerate(truth.boxes):
        for box in boxes:
            x1, y1, x2, y2 = box.bbox
            assert 0.0 <= x1 < x2 <= 1.0
            assert 0.0 <= y1 < y2 <= 1.0
            assert 0.0 < box.visible <= 1.0
            visit = by_id[box.id]
            assert visit.enter_frame <= index < visit.leave_frame
            assert box.label == visit.label
        present = {o.id for o in truth.objects if o.enter_frame <= index < o.leave_frame}
        assert {b.id for b in boxes} == present


def test_objects_visit_one_at_a_time_with_empty_gaps(scene: tuple[Path, Path, SceneTruth]) -> None:
    _, _, truth = scene
    visits = sorted(truth.objects, key=lambda o: o.enter_frame)
    assert truth.boxes[0] == ()  # the clip opens empty, so the first arrival is an event
    for before, after in itertools.pairwise(visits):
        gap = range(before.leave_frame, after.enter_frame)
        assert len(gap) >= 1
        assert all(truth.boxes[i] == () for i in gap)
    assert {o.label for o in truth.objects} <= {"person", "motorcycle", "cat"}


def test_truth_boxes_cover_the_pasted_pixels(scene: tuple[Path, Path, SceneTruth]) -> None:
    video, _, truth = scene
    frames = _frames(video)
    empty = frames[0].astype(np.int16)
    width, height = truth.size
    checked = 0
    for index, boxes in enumerate(truth.boxes):
        full = [b for b in boxes if b.visible == 1.0]
        if not full:
            continue
        bx1, by1, bx2, by2 = full[0].bbox
        x1, y1, x2, y2 = (
            round(bx1 * width),
            round(by1 * height),
            round(bx2 * width),
            round(by2 * height),
        )
        diff = np.abs(frames[index].astype(np.int16) - empty).mean(axis=2)
        inside = np.zeros((height, width), dtype=bool)
        inside[y1:y2, x1:x2] = True
        # The sprite replaces the background inside its box; outside only codec noise differs.
        assert diff[inside].mean() > 20, f"frame {index}: box {full[0]} shows background"
        assert diff[~inside].mean() < 8, f"frame {index}: pixels changed outside the boxes"
        checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_same_seed_gives_identical_scene(
    tmp_path: Path, scene: tuple[Path, Path, SceneTruth]
) -> None:
    video, _, truth = scene
    again = generate_scene(
        tmp_path / "a.mp4", tmp_path / "a.json", seconds=SECONDS, fps=FPS, size=SIZE, seed=3
    )
    assert again == truth
    frames, frames_again = _frames(video), _frames(tmp_path / "a.mp4")
    assert len(frames) == len(frames_again)
    assert all(np.array_equal(a, b) for a, b in zip(frames, frames_again, strict=True))
    other = generate_scene(
        tmp_path / "b.mp4", tmp_path / "b.json", seconds=SECONDS, fps=FPS, size=SIZE, seed=4
    )
    assert other != truth


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (191, 108)}, "even"),
        ({"size": (32, 32)}, "at least"),
        ({"seconds": 1.0, "fps": 5.0}, "raise --seconds or --fps"),
        ({"fps": 0.0}, "positive"),
    ],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SceneError, match=message):
        generate_scene(tmp_path / "x.mp4", tmp_path / "x.json", **kwargs)
    assert not (tmp_path / "x.mp4").exists()


def test_command_line_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video, truth_file = tmp_path / "cli.mp4", tmp_path / "cli.json"
    argv = ["scene", "--out", str(video), "--truth", str(truth_file)]
    argv += ["--seconds", "3", "--fps", "5", "--size", "128x72", "--seed", "1"]
    assert simulator_main(argv) == 0
    truth = SceneTruth.load(truth_file)
    assert (truth.frames, truth.size) == (15, (128, 72))
    assert len(_frames(video)) == 15
    assert "wrote" in capsys.readouterr().out


def test_command_line_rejects_a_malformed_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scene", "--out", str(tmp_path / "o.mp4"), "--truth", str(tmp_path / "o.json")]
    with pytest.raises(SystemExit) as exit_info:
        simulator_main([*argv, "--size", "wide"])
    assert exit_info.value.code == 2
    assert "640x360" in capsys.readouterr().err
