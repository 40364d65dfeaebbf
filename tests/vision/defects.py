"""Realistic defects injected into real frames, with known boxes (for anomaly tests and bench).

The scene is ``bottle-detection.mp4``'s opening: three bottles with blue caps on a white table
against a grey wall. Each function returns a new frame and the defect's box (x1, y1, x2, y2
normalised 0..1); the input frame is not changed.

- ``paste``: a foreign object, a patch of another real photograph;
- ``scratch``: a dark smear across a bottle;
- ``missing``: one bottle gone, painted over with the wall and table from between bottles;
- ``recolour``: one cap's colour changed (blue to red).
"""

from __future__ import annotations

__all__ = ["DEFECTS", "Box", "bottle_caps", "inject", "missing", "paste", "recolour", "scratch"]

from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
Box = tuple[float, float, float, float]


def bottle_caps(frame: Image) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x, y, w, h) of the blue caps, left to right."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    blue = (hsv[..., 0] > 100) & (hsv[..., 0] < 130) & (hsv[..., 1] > 150) & (hsv[..., 2] > 80)
    n, _, stats, _ = cv2.connectedComponentsWithStats(blue.astype(np.uint8))
    caps = [
        (int(stats[i, 0]), int(stats[i, 1]), int(stats[i, 2]), int(stats[i, 3]))
        for i in range(1, n)
        if stats[i, 4] > 200
    ]
    return sorted(caps)


def _norm(frame: Image, x1: int, y1: int, x2: int, y2: int) -> Box:
    h, w = frame.shape[:2]
    return x1 / w, y1 / h, x2 / w, y2 / h


def _bottle(frame: Image, k: int) -> tuple[int, int, int, int]:
    """Pixel box (x1, y1, x2, y2) of bottle ``k`` (0..2): below its cap down to the table."""
    x, y, w, _ = bottle_caps(frame)[k]
    cx = x + w // 2
    return cx - 36, y - 4, cx + 36, int(frame.shape[0] * 0.88)


def paste(frame: Image, donor: Image, rng: np.random.Generator) -> tuple[Image, Box]:
    h, w = frame.shape[:2]
    size = int(rng.integers(36, 56))
    x, y = int(rng.integers(20, w - size - 20)), int(rng.integers(20, h - size - 20))
    dy, dx = (
        int(rng.integers(0, donor.shape[0] - size)),
        int(rng.integers(0, donor.shape[1] - size)),
    )
    out = frame.copy()
    out[y : y + size, x : x + size] = donor[dy : dy + size, dx : dx + size]
    return out, _norm(frame, x, y, x + size, y + size)


def scratch(frame: Image, rng: np.random.Generator) -> tuple[Image, Box]:
    x1, y1, x2, y2 = _bottle(frame, int(rng.integers(0, 3)))
    ya = int(rng.integers(y1 + 60, y2 - 80))
    yb = ya + int(rng.integers(30, 60))
    out = frame.copy()
    cv2.line(out, (x1 + 8, ya), (x2 - 8, yb), (45, 40, 40), 5, cv2.LINE_AA)
    return out, _norm(frame, x1 + 6, ya - 3, x2 - 6, yb + 3)


def missing(frame: Image, rng: np.random.Generator) -> tuple[Image, Box]:
    k = int(rng.integers(0, 3))
    x1, y1, x2, y2 = _bottle(frame, k)
    caps = bottle_caps(frame)
    # the wall and table between bottles 0 and 1 look like what is behind every bottle
    gap = (caps[0][0] + caps[0][2] + caps[1][0]) // 2
    width = x2 - x1
    out = frame.copy()
    out[y1:y2, x1:x2] = frame[y1:y2, gap - width // 2 : gap - width // 2 + width]
    return out, _norm(frame, x1, y1, x2, y2)


def recolour(frame: Image, rng: np.random.Generator) -> tuple[Image, Box]:
    x, y, w, h = bottle_caps(frame)[int(rng.integers(0, 3))]
    out = frame.copy()
    cap = cv2.cvtColor(out[y : y + h, x : x + w], cv2.COLOR_BGR2HSV)
    blue = (cap[..., 0] > 95) & (cap[..., 0] < 135)
    cap[..., 0] = np.where(blue, 0, cap[..., 0])  # hue 0: red
    out[y : y + h, x : x + w] = cv2.cvtColor(cap, cv2.COLOR_HSV2BGR)
    return out, _norm(frame, x, y, x + w, y + h)


DEFECTS: dict[str, Callable[..., tuple[Image, Box]]] = {
    "paste": paste,
    "scratch": scratch,
    "missing": missing,
    "recolour": recolour,
}


def inject(frame: Image, kind: str, rng: np.random.Generator, donor: Image) -> tuple[Image, Box]:
    """``frame`` with one defect of ``kind`` (a key of ``DEFECTS``) and its box."""
    if kind == "paste":
        return paste(frame, donor, rng)
    return DEFECTS[kind](frame, rng)
