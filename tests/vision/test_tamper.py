"""Tamper events on a real clip that the test itself blocks, blurs, shifts and freezes.

The first 8 s of one-by-one-person-detection.mp4 (5 fps) teach the monitor the normal view;
the next 12 s are played untouched (a person walks in: no tamper) or modified.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.config import TamperConfig
from edge_app.domain import Phase
from edge_app.vision.tamper import TamperMonitor, TamperStep

pytestmark = pytest.mark.realworld

FPS = 5.0
WARMUP, TOTAL = 40, 100  # frames at 5 fps: 8 s of warm-up, 20 s in all
Frames = list[NDArray[np.uint8]]


@cache
def _clip(path: Path) -> tuple[NDArray[np.uint8], ...]:
    capture = cv2.VideoCapture(str(path))
    frames: list[NDArray[np.uint8]] = []
    index = 0
    while len(frames) < TOTAL:
        ok, image = capture.read()
        assert ok, path
        if index % 2 == 0:  # 10 fps clip -> 5 fps
            frames.append(np.asarray(image, np.uint8))
        index += 1
    capture.release()
    return tuple(frames)


@pytest.fixture
def clip(realworld: Path) -> Frames:
    # frames 40..100 of the source at 10 fps cover frame 64's visitor walking in
    return list(_clip(realworld / "videos" / "one-by-one-person-detection.mp4"))


def run(frames: Frames) -> list[tuple[int, TamperStep]]:
    monitor = TamperMonitor(TamperConfig(warmup_s=WARMUP / FPS - 0.1))
    steps = [(i, s) for i, f in enumerate(frames) for s in monitor.update(i / FPS, f)]
    assert monitor.learned
    return steps + [(len(frames), s) for s in monitor.finish()]


def modified(
    frames: Frames,
    change: Callable[[NDArray[np.uint8], int], NDArray[np.uint8]],
    start: int = 60,
    end: int = 80,
) -> Frames:
    return [change(f, i) if start <= i < end else f for i, f in enumerate(frames)]


def kinds(steps: list[tuple[int, TamperStep]]) -> list[tuple[str, Phase]]:
    return [(s.kind, s.phase) for _, s in steps]


def test_untouched_clip_raises_nothing(clip: Frames) -> None:
    assert run(clip) == []


def test_covered_lens_is_blocked(clip: Frames) -> None:
    dark = modified(clip, lambda f, i: np.full_like(f, 12))
    steps = run(dark)
    assert kinds(steps) == [("blocked", Phase.START), ("blocked", Phase.END)]
    start, end = steps[0][0], steps[1][0]
    assert 60 < start <= 60 + 2 * FPS + 1  # held for hold_s = 2 s
    assert 80 < end <= 80 + 2 * FPS + 1


def test_hand_over_the_lens_is_blocked(clip: Frames) -> None:
    # a skin-coloured, nearly uniform frame (a palm close to the lens)
    palm = modified(
        clip,
        lambda f, i: np.clip(np.full_like(f, (120, 150, 200)) + (i % 3), 0, 255).astype(np.uint8),
    )
    assert ("blocked", Phase.START) in kinds(run(palm))


def test_smeared_lens_is_defocused(clip: Frames) -> None:
    blurred = modified(clip, lambda f, i: np.asarray(cv2.GaussianBlur(f, (0, 0), 6), np.uint8))
    assert kinds(run(blurred)) == [("defocused", Phase.START), ("defocused", Phase.END)]


def test_turned_camera_is_moved(clip: Frames) -> None:
    def shift(f: NDArray[np.uint8], i: int) -> NDArray[np.uint8]:
        h, w = f.shape[:2]
        m = np.array([[1, 0, -0.3 * w], [0, 1, 0.2 * h]], np.float32)
        return np.asarray(cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT), np.uint8)

    steps = run(modified(clip, shift, start=60, end=TOTAL))
    assert kinds(steps) == [("moved", Phase.START), ("moved", Phase.END)]
    assert steps[1][1].extra["end_reason"] == "source ended"


def test_frozen_feed_is_frozen(clip: Frames) -> None:
    stuck = modified(clip, lambda f, i: clip[59])
    steps = run(stuck)
    assert kinds(steps) == [("frozen", Phase.START), ("frozen", Phase.END)]
    # frame 60 is the first repeat of frame 59: frozen_s = 3 s later is frame 75
    assert steps[0][0] == 60 + 3 * FPS
