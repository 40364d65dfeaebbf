"""Generated scenes where the detector must lose sight of people: crossings and occlusions.

Built like ``simulator.scene`` (the same photographs and background, exact ground truth), but
with two scripted situations that split or swap tracks in a tracker that trusts detections
alone:

* ``crossing``: two people walk towards each other across the frame, one nearer the camera
  (lower, pasted last, so in front) than the other; while they pass, the farther one is
  hidden behind the nearer one. Tracking is right when each keeps one identity (no swap, no
  merge).
* ``occlusion``: one person walks across behind a pillar wider than themselves, and is fully
  hidden for a moment. Tracking is right when they keep one identity.

Ground truth: ``TruthBox.bbox`` is the sprite's rectangle clipped to the frame (where the
person *is*, hidden or not), and ``visible`` the share of the sprite's pixels that can be
seen (outside the frame and behind nearer things both count as unseen). Every person is one
``SceneObject`` for the whole walk.

``python -m simulator scene --kind crossing --out c.mp4 --truth c.json`` writes both files.
"""

from __future__ import annotations

__all__ = ["KINDS", "generate_encounter"]

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from simulator.scene import (
    _CAST,
    _MIN_SIDE,
    SceneError,
    SceneObject,
    SceneTruth,
    TruthBox,
    _background,
    _skimage,
    _sprite,
    _tile,
)

KINDS = ("crossing", "occlusion")
"""The scripted situations ``generate_encounter`` can write."""

Image = npt.NDArray[np.uint8]
_PEOPLE = {c.name: c for c in _CAST if c.label == "person"}


@dataclass(frozen=True, slots=True)
class _Walker:
    id: int
    sprite: Image
    label: str
    xs: tuple[int, ...]  # sprite left edge per frame, pixels
    top: int


def generate_encounter(
    out: Path,
    truth: Path,
    *,
    kind: str,
    seconds: float = 8.0,
    fps: float = 10.0,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
) -> SceneTruth:
    """Write the ``kind`` scene (one of ``KINDS``) as an mp4v clip to ``out`` and its ground
    truth JSON to ``truth``; return the truth. Same arguments, same files. Raises
    ``SceneError`` for bad parameters. The caller owns both files."""
    width, height = size
    frames = round(seconds * fps)
    if kind not in KINDS:
        raise SceneError(f"unknown scene kind {kind!r}; choose one of {', '.join(KINDS)}")
    if fps <= 0 or frames < 20:
        raise SceneError(
            f"{seconds} s at {fps} fps is {frames} frames; an encounter needs at least 20: "
            "raise --seconds or --fps"
        )
    if width < _MIN_SIDE or height < _MIN_SIDE or width % 2 or height % 2:
        raise SceneError(f"size must be even and at least {_MIN_SIDE}x{_MIN_SIDE}, got {size}")
    rng = random.Random(seed)  # noqa: S311  # layout randomness, not security
    background = _background(width, height, rng)
    if kind == "crossing":
        walkers, pillar = _crossing(frames, width, height, rng), None
    else:
        walkers, pillar = _occlusion(frames, width, height, rng)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SceneError(f"OpenCV cannot write an mp4v video to {out}: check the path")
    boxes: list[tuple[TruthBox, ...]] = []
    try:
        for index in range(frames):
            frame = background.copy()
            owner = np.zeros((height, width), np.int32)  # who is seen at each pixel (0: nobody)
            placed = [(w, _place(frame, owner, w, index)) for w in walkers]
            if pillar is not None:
                x1, x2, texture = pillar
                frame[:, x1:x2] = texture
                owner[:, x1:x2] = 0
            writer.write(frame)
            boxes.append(tuple(_truth(w, rect, owner, size) for w, rect in placed if rect))
    finally:
        writer.release()
    objects = tuple(
        SceneObject(w.id, w.label, seen[0], seen[-1] + 1)
        for w in walkers
        if (seen := [i for i, frame in enumerate(boxes) if any(b.id == w.id for b in frame)])
    )
    result = SceneTruth(float(fps), size, frames, objects, tuple(boxes))
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    return result


def _walk(frames: int, start: int, end: int) -> tuple[int, ...]:
    """Left edges from ``start`` to ``end`` (pixels) at constant speed over ``frames``."""
    return tuple(round(start + (end - start) * i / (frames - 1)) for i in range(frames))


def _crossing(frames: int, width: int, height: int, rng: random.Random) -> list[_Walker]:
    """Two people, each entering at one side and leaving at the other, passing mid-clip."""
    near, far = rng.sample(sorted(_PEOPLE), 2)
    walkers = []
    # The far one is smaller and higher in the frame; both enter just inside the frame.
    for wid, (name, scale, lift) in enumerate(((far, 0.70, 0.16), (near, 0.82, 0.02)), 1):
        sprite = _sprite(replace(_PEOPLE[name], height=scale), height)
        sprite_h, sprite_w = sprite.shape[:2]
        top = height - sprite_h - round(height * lift)
        left, right = -sprite_w // 3, width - 2 * sprite_w // 3
        xs = _walk(frames, left, right) if wid == 1 else _walk(frames, right, left)
        walkers.append(_Walker(wid, sprite, "person", xs, top))
    return walkers  # pasted in order: the near one last, in front


def _occlusion(
    frames: int, width: int, height: int, rng: random.Random
) -> tuple[list[_Walker], tuple[int, int, Image]]:
    """One person crossing behind a brick pillar half again as wide as they are."""
    name = rng.choice(sorted(_PEOPLE))
    sprite = _sprite(replace(_PEOPLE[name], height=0.62), height)
    sprite_h, sprite_w = sprite.shape[:2]
    top = height - sprite_h - round(height * 0.04)
    start, end = -sprite_w // 3, width - 2 * sprite_w // 3
    if rng.random() < 0.5:
        start, end = end, start
    walker = _Walker(1, sprite, "person", _walk(frames, start, end), top)
    pillar_w = round(sprite_w * 1.5)
    x1 = (width - pillar_w) // 2 + round(width * rng.uniform(-0.05, 0.05))
    # Darker brick than the wall: a gravel pillar made SSD v2 see one frame-wide "person".
    bricks = [_tile(_skimage("brick"), pillar_w, height) * g for g in (0.45, 0.5, 0.8)]
    texture = np.clip(np.stack(bricks, axis=-1), 0, 255).astype(np.uint8)
    return [walker], (x1, x1 + pillar_w, texture)


def _place(
    frame: Image, owner: npt.NDArray[np.int32], walker: _Walker, index: int
) -> tuple[int, int, int, int] | None:
    """Paste ``walker`` at frame ``index``; mark its pixels in ``owner``. Returns its clipped
    rectangle (x1, y1, x2, y2 pixels) or None when it is outside the frame."""
    frame_h, frame_w = frame.shape[:2]
    sprite_h, sprite_w = walker.sprite.shape[:2]
    x, y = walker.xs[index], walker.top
    x1, y1, x2, y2 = max(0, x), max(0, y), min(frame_w, x + sprite_w), min(frame_h, y + sprite_h)
    if x1 >= x2 or y1 >= y2:
        return None
    frame[y1:y2, x1:x2] = walker.sprite[y1 - y : y2 - y, x1 - x : x2 - x]
    owner[y1:y2, x1:x2] = walker.id
    return x1, y1, x2, y2


def _truth(
    walker: _Walker,
    rect: tuple[int, int, int, int],
    owner: npt.NDArray[np.int32],
    size: tuple[int, int],
) -> TruthBox:
    width, height = size
    x1, y1, x2, y2 = rect
    sprite_h, sprite_w = walker.sprite.shape[:2]
    seen = int(np.count_nonzero(owner[y1:y2, x1:x2] == walker.id))
    return TruthBox(
        walker.id,
        walker.label,
        (x1 / width, y1 / height, x2 / width, y2 / height),
        round(seen / (sprite_w * sprite_h), 4),
    )
