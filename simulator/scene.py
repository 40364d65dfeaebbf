"""A synthetic video with exact ground truth, built from real photographs.

The photographs ship inside scikit-image's wheel (``skimage.data``), so no download is needed:
two people (the astronaut Eileen Collins, the "camera man"), a motorcycle and a cat, each cropped
tightly to its subject, visit a background tiled from brick, grass and gravel textures. They
come one at a time (each at most once per clip, fewer when the clip is short): enter from one
side, cross, pause, leave by the other side, with empty stretches in between so start/end
events have something to mark.

Ground truth is the pasted sprite's rectangle, clipped to the frame and normalised to 0..1, so
it is exact by construction. ``enter_frame`` is the first frame an object is visible in;
``leave_frame`` is the first frame after its visit in which it is not (``range`` semantics).
Each box also carries ``visible``, the fraction of the sprite inside the frame, so detector
tests can ignore half-entered objects.

``python -m simulator scene --out scene.mp4 --truth scene.json`` writes both files
(``--kind crossing|occlusion``: the scenes of ``simulator.encounters``).
"""

from __future__ import annotations

__all__ = [
    "SceneError",
    "SceneObject",
    "SceneTruth",
    "TruthBox",
    "generate_scene",
    "main",
    "register",
]

import argparse
import json
import random
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import skimage.data

Image = npt.NDArray[np.uint8]

# Frames that a visit needs at least (enter, pause, leave), and the empty gap after each.
_MIN_VISIT = 4
_MIN_GAP = 2
_MIN_SIDE = 64


class SceneError(ValueError):
    """Bad scene parameters, or the video could not be written."""


@dataclass(frozen=True, slots=True)
class _Cast:
    """One photograph: where its subject is, what COCO calls it, how tall it appears."""

    name: str
    label: str
    crop: tuple[int, int, int, int]  # x1, y1, x2, y2 in the source photograph, pixels
    height: float  # sprite height as a fraction of the frame height


# Crops were chosen by eye to hug each subject; heights were tuned with the COCO SSD MobileNet
# v2 quantized detector so that fully visible sprites are found with score >= 0.5.
_CAST: tuple[_Cast, ...] = (
    _Cast("astronaut", "person", (20, 10, 365, 512), 0.92),
    _Cast("motorcycle", "motorcycle", (88, 70, 690, 458), 0.62),
    _Cast("camera", "person", (0, 55, 340, 512), 0.92),
    _Cast("chelsea", "cat", (0, 0, 451, 300), 0.55),
)


@dataclass(frozen=True, slots=True)
class SceneObject:
    """One visitor: present in frames ``range(enter_frame, leave_frame)``."""

    id: int
    label: str
    enter_frame: int
    leave_frame: int


@dataclass(frozen=True, slots=True)
class TruthBox:
    """Where an object is in one frame: ``bbox`` is x1, y1, x2, y2 normalised to 0..1."""

    id: int
    label: str
    bbox: tuple[float, float, float, float]
    visible: float  # fraction of the sprite's area inside the frame, 0..1


@dataclass(frozen=True, slots=True)
class SceneTruth:
    """Ground truth of a generated scene; ``boxes[i]`` lists the objects in frame ``i``."""

    fps: float
    size: tuple[int, int]  # width, height in pixels
    frames: int
    objects: tuple[SceneObject, ...]
    boxes: tuple[tuple[TruthBox, ...], ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON document (frame indices become string keys, as JSON requires)."""
        return {
            "fps": self.fps,
            "size": list(self.size),
            "frames": self.frames,
            "objects": [
                {
                    "id": o.id,
                    "label": o.label,
                    "enter_frame": o.enter_frame,
                    "leave_frame": o.leave_frame,
                }
                for o in self.objects
            ],
            "boxes": {
                str(i): [
                    {"id": b.id, "label": b.label, "bbox": list(b.bbox), "visible": b.visible}
                    for b in frame
                ]
                for i, frame in enumerate(self.boxes)
            },
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SceneTruth:
        """Inverse of ``to_json``; raises ``SceneError`` naming the first missing field."""
        try:
            frames = int(doc["frames"])
            boxes = doc["boxes"]
            return cls(
                fps=float(doc["fps"]),
                size=(int(doc["size"][0]), int(doc["size"][1])),
                frames=frames,
                objects=tuple(
                    SceneObject(
                        int(o["id"]), str(o["label"]), int(o["enter_frame"]), int(o["leave_frame"])
                    )
                    for o in doc["objects"]
                ),
                boxes=tuple(
                    tuple(
                        TruthBox(
                            int(b["id"]),
                            str(b["label"]),
                            _bbox(b["bbox"]),
                            float(b.get("visible", 1.0)),
                        )
                        for b in boxes.get(str(i), [])
                    )
                    for i in range(frames)
                ),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SceneError(f"not a scene truth document: {exc!r}") from exc

    @classmethod
    def load(cls, path: Path) -> SceneTruth:
        """Read a truth file written by ``generate_scene``."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def generate_scene(
    out: Path,
    truth: Path,
    *,
    seconds: float = 12,
    fps: float = 10,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
) -> SceneTruth:
    """Write an MPEG-4 clip to ``out`` and its ground truth JSON to ``truth``; return the truth.

    ``size`` is (width, height) in pixels and must be even (MPEG-4 part 2 needs it). The same
    ``seed`` and parameters give the same truth and the same frames. The caller owns both files.
    """
    width, height = size
    frames = round(seconds * fps)
    if fps <= 0 or seconds <= 0:
        raise SceneError(f"seconds and fps must be positive, got {seconds} s at {fps} fps")
    if width < _MIN_SIDE or height < _MIN_SIDE or width % 2 or height % 2:
        raise SceneError(f"size must be even and at least {_MIN_SIDE}x{_MIN_SIDE}, got {size}")
    if frames < _MIN_GAP + _MIN_VISIT + _MIN_GAP:
        raise SceneError(
            f"{seconds} s at {fps} fps is {frames} frames; a scene needs at least "
            f"{_MIN_GAP + _MIN_VISIT + _MIN_GAP}: raise --seconds or --fps"
        )
    # Layout randomness, not security; stdlib Random streams are stable across Python versions.
    rng = random.Random(seed)  # noqa: S311
    background = _background(width, height, rng)
    visits = _plan(frames, width, height, rng)
    sprites = {v.cast.name: _sprite(v.cast, height) for v in visits}

    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SceneError(f"OpenCV cannot write an mp4v video to {out}: check the path")
    boxes: list[tuple[TruthBox, ...]] = []
    try:
        for index in range(frames):
            frame = background.copy()
            in_frame: list[TruthBox] = []
            for visit in visits:
                position = visit.position(index)
                if position is None:
                    continue
                box = _paste(frame, sprites[visit.cast.name], position)
                if box is not None:
                    in_frame.append(TruthBox(visit.id, visit.cast.label, *box))
            writer.write(frame)
            boxes.append(tuple(in_frame))
    finally:
        writer.release()

    # Taken from the boxes rather than the plan, so truth can never claim an invisible object.
    objects = tuple(
        SceneObject(v.id, v.cast.label, seen[0], seen[-1] + 1)
        for v in visits
        if (seen := [i for i, frame in enumerate(boxes) if any(b.id == v.id for b in frame)])
    )
    result = SceneTruth(float(fps), (width, height), frames, objects, tuple(boxes))
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    return result


# -- timeline -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Visit:
    id: int
    cast: _Cast
    start: int
    path: tuple[tuple[int, int], ...]  # sprite top-left per frame of the visit, pixels

    def position(self, frame: int) -> tuple[int, int] | None:
        offset = frame - self.start
        return self.path[offset] if 0 <= offset < len(self.path) else None


def _plan(frames: int, width: int, height: int, rng: random.Random) -> list[_Visit]:
    """Who visits when and along which path. Visits never overlap in time."""
    lead_gap = max(_MIN_GAP, frames // 20)
    count = min(len(_CAST), (frames - lead_gap) // (_MIN_VISIT + _MIN_GAP))
    order = list(_CAST)
    rng.shuffle(order)
    slot = (frames - lead_gap) // count
    visits = []
    for i, cast in enumerate(order[:count]):
        visit_len = max(_MIN_VISIT, slot - max(_MIN_GAP, round(slot * 0.25)))
        sprite_w, sprite_h = _sprite_size(cast, height)
        path = _path(visit_len, frame=(width, height), sprite=(sprite_w, sprite_h), rng=rng)
        visits.append(_Visit(i + 1, cast, lead_gap + i * slot, path))
    return visits


def _path(
    length: int, *, frame: tuple[int, int], sprite: tuple[int, int], rng: random.Random
) -> tuple[tuple[int, int], ...]:
    """Enter from one side, cross to a stop, pause, leave by the other side.

    ``length`` positions (sprite top-left, pixels), starting and ending one step inside the
    frame, so the sprite is already partly visible on the visit's first frame.
    """
    width, height = frame
    sprite_w, sprite_h = sprite
    enter = max(1, round(length * 0.35))
    leave = max(1, round(length * 0.35))
    pause = max(1, length - enter - leave)
    leave = length - enter - pause
    room = max(0, width - sprite_w)
    stop = round(room * rng.uniform(0.25, 0.75))
    # Feet on the ground: the bottom edge sits in the lower tenth of the frame.
    top = max(0, height - sprite_h - round(height * rng.uniform(0.0, 0.1)))
    outside_left, outside_right = -sprite_w, width
    start_x, end_x = outside_left, outside_right
    if rng.random() < 0.5:
        start_x, end_x = end_x, start_x
    xs = [_lerp(start_x, stop, (k + 1) / (enter + 1)) for k in range(enter)]
    xs += [stop] * pause
    xs += [_lerp(stop, end_x, (k + 1) / (leave + 1)) for k in range(leave)]
    return tuple((x, top) for x in xs)


def _lerp(a: int, b: int, t: float) -> int:
    return round(a + (b - a) * t)


# -- pixels ---------------------------------------------------------------------------------


def _sprite_size(cast: _Cast, frame_height: int) -> tuple[int, int]:
    x1, y1, x2, y2 = cast.crop
    sprite_h = round(frame_height * cast.height)
    return max(1, round(sprite_h * (x2 - x1) / (y2 - y1))), sprite_h


def _photo(name: str) -> Image:
    """The named scikit-image photograph as BGR uint8 (what OpenCV writes)."""
    # stereo_motorcycle() returns (left, right, disparity); the left view is the photograph.
    image = _skimage("stereo_motorcycle")[0] if name == "motorcycle" else _skimage(name)
    if image.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _sprite(cast: _Cast, frame_height: int) -> Image:
    x1, y1, x2, y2 = cast.crop
    crop = _photo(cast.name)[y1:y2, x1:x2]
    sprite = cv2.resize(crop, _sprite_size(cast, frame_height), interpolation=cv2.INTER_AREA)
    return np.asarray(sprite, dtype=np.uint8)


def _background(width: int, height: int, rng: random.Random) -> Image:
    """A brick wall above a strip of grass and a gravel yard, tinted to look like a place."""
    wall_h = round(height * rng.uniform(0.38, 0.46))
    grass_h = round(height * 0.08)
    layers = (
        (_skimage("brick"), (0.55, 0.65, 0.95), wall_h),  # B, G, R gains: reddish brick
        (_skimage("grass"), (0.45, 0.95, 0.55), grass_h),
        (_skimage("gravel"), (0.80, 0.85, 0.90), height - wall_h - grass_h),
    )
    bands = []
    for texture, gains, band_h in layers:
        tiled = _tile(texture, width, band_h)
        bands.append(np.stack([tiled * g for g in gains], axis=-1))
    return np.clip(np.concatenate(bands, axis=0), 0, 255).astype(np.uint8)


def _tile(texture: Image, width: int, height: int) -> npt.NDArray[np.float64]:
    """``texture`` repeated (not stretched) to width x height, scaled to half size for detail."""
    small = cv2.resize(
        texture,
        (texture.shape[1] // 2, texture.shape[0] // 2),
        interpolation=cv2.INTER_AREA,
    )
    reps = (-(-height // small.shape[0]), -(-width // small.shape[1]))
    return np.tile(small, reps)[:height, :width].astype(np.float64)


def _paste(
    frame: Image, sprite: Image, top_left: tuple[int, int]
) -> tuple[tuple[float, float, float, float], float] | None:
    """Copy ``sprite`` into ``frame`` at ``top_left`` (pixels, may be partly outside).

    Returns the visible rectangle normalised to the frame and the visible fraction, or None
    when nothing of the sprite lands in the frame.
    """
    frame_h, frame_w = frame.shape[:2]
    sprite_h, sprite_w = sprite.shape[:2]
    x, y = top_left
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(frame_w, x + sprite_w), min(frame_h, y + sprite_h)
    if x1 >= x2 or y1 >= y2:
        return None
    frame[y1:y2, x1:x2] = sprite[y1 - y : y2 - y, x1 - x : x2 - x]
    bbox = (x1 / frame_w, y1 / frame_h, x2 / frame_w, y2 / frame_h)
    visible = (x2 - x1) * (y2 - y1) / (sprite_w * sprite_h)
    return bbox, round(visible, 4)


def _skimage(name: str) -> Any:
    """Call the ``skimage.data`` loader ``name`` (bundled files only: no download)."""
    loader = getattr(skimage.data, name)
    return loader()


def _bbox(values: Any) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


# -- command line ---------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from exc
    return width, height


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``scene`` subcommand."""
    parser = subparsers.add_parser(
        "scene",
        help="write a synthetic clip with ground truth",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--out", type=Path, required=True, help="video file to write (.mp4)")
    parser.add_argument("--truth", type=Path, required=True, help="ground-truth JSON to write")
    parser.add_argument("--seconds", type=float, default=12.0, help="clip length (default 12)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    parser.add_argument(
        "--size", type=_size, default=(640, 360), help="WIDTHxHEIGHT, even (default 640x360)"
    )
    parser.add_argument("--seed", type=int, default=0, help="layout seed (default 0)")
    parser.add_argument(
        "--kind",
        choices=["visits", "crossing", "occlusion"],
        default="visits",
        help="visits: objects one at a time (default); crossing: two people pass each other; "
        "occlusion: one person walks behind a pillar (simulator.encounters)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``scene`` with parsed arguments; prints a one-line summary per object."""
    # encounters builds on this module, so it is imported once this one is loaded
    from simulator.encounters import generate_encounter  # noqa: PLC0415

    make = generate_scene if args.kind == "visits" else generate_encounter
    kind = {} if args.kind == "visits" else {"kind": args.kind}
    try:
        truth = make(
            args.out,
            args.truth,
            seconds=args.seconds,
            fps=args.fps,
            size=args.size,
            seed=args.seed,
            **kind,
        )
    except SceneError as exc:
        print(f"scene: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out} ({truth.frames} frames, {truth.size[0]}x{truth.size[1]}) "
        f"and {args.truth}"
    )
    for line in _summary(truth):
        print(line)
    return 0


def _summary(truth: SceneTruth) -> Iterator[str]:
    for o in truth.objects:
        yield f"  #{o.id} {o.label:<10} frames {o.enter_frame}..{o.leave_frame - 1}"
