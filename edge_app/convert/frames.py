"""Representative and held-out frames from the user's own clips and images.

Frames are read through the daemon's own sources (``VideoFileSource``, ``ImageDirSource``),
so they are decoded exactly as the running appliance decodes them, and sampled evenly over
the whole set: every clip is spread over its length, not its first seconds. The samples
alternate between calibration and held-out, so the frames that check a conversion were not
the ones that calibrated it.
"""

from __future__ import annotations

__all__ = ["CalibrationSet", "FrameRecord", "sample_frames"]

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_app.clock import SystemClock
from edge_app.domain import Image
from edge_app.errors import SourceError
from edge_app.sources import ImageDirSource, VideoFileSource
from edge_app.sources.images import IMAGE_SUFFIXES

_MIN_SIDE_SHARE = 8  # a frame upscaled more than 8x is not what the camera will deliver


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """Where one sampled frame came from: file, frame index in it (0 for an image)."""

    file: str
    index: int


@dataclass(frozen=True, slots=True)
class CalibrationSet:
    """Sampled BGR frames (owned), each with its record, and the files they came from."""

    calibration: tuple[Image, ...]
    held_out: tuple[Image, ...]
    records: tuple[FrameRecord, ...]
    files: tuple[Path, ...]


def _files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise SourceError(f"calibration input {path} does not exist")
    return found


def _count(path: Path) -> int:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return 1
    with contextlib.closing(_video(path)) as source:
        return max(1, source.frame_count)


def _video(path: Path) -> VideoFileSource:
    return VideoFileSource(path, "calibration", clock=SystemClock())


def _read(path: Path, wanted: set[int]) -> Iterator[tuple[int, Image]]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise SourceError(f"calibration image {path} cannot be read (not an image)")
        channels = 1 if raw.ndim == 2 else raw.shape[2]
        if channels != 3 or raw.dtype != np.uint8:
            raise SourceError(
                f"calibration image {path} has {channels} channel(s) of {raw.dtype}; cameras "
                "deliver 8-bit colour (3 channels): convert it, or leave it out"
            )
        # read through the daemon's image source, as a camera of images would
        images = ImageDirSource(path.parent, "calibration", clock=SystemClock())
        images.files = [path]
        for frame in images.frames(threading.Event()):
            yield 0, frame.image
        return
    with contextlib.closing(_video(path)) as video:
        for frame in video.frames(threading.Event()):
            if frame.index in wanted:
                yield frame.index, frame.image
            if frame.index >= max(wanted):
                return


def sample_frames(
    paths: Sequence[Path], count: int, held_out: int, input_size: tuple[int, int]
) -> CalibrationSet:
    """``count`` calibration and ``held_out`` held-out frames, sampled evenly over the clips
    and images in ``paths`` (files, or folders of them). ``input_size`` is the model's
    (width, height): frames much smaller than it are refused. Raises ``SourceError``
    naming the file: missing, unreadable, empty, wrong channels or too small."""
    if count < 1 or held_out < 0:
        raise ValueError(f"count must be >= 1 and held_out >= 0, got {count}, {held_out}")
    files = _files(paths)
    if not files:
        raise SourceError(
            f"the calibration set {', '.join(map(str, paths))} is empty: give clips or images "
            "from the camera the model will run on"
        )
    counts = [_count(f) for f in files]
    total = sum(counts)
    wanted_n = min(total, count + held_out)
    # evenly over the concatenation of all files' frames
    picks = sorted({int(i) for i in np.linspace(0, total - 1, wanted_n)})
    starts = np.cumsum([0, *counts])
    images: list[Image] = []
    records: list[FrameRecord] = []
    for n, path in enumerate(files):
        local = {p - int(starts[n]) for p in picks if starts[n] <= p < starts[n + 1]}
        if not local:
            continue
        for index, image in _read(path, local):
            _check_size(path, image, input_size)
            images.append(image)
            records.append(FrameRecord(str(path), index))
    if not images:
        raise SourceError(f"no frame could be read from {', '.join(map(str, files))}")
    # alternate: held-out frames lie between calibration frames
    period = max(2, len(images) // max(1, held_out))
    held = set(list(range(period // 2, len(images), period))[:held_out]) if held_out else set()
    return CalibrationSet(
        calibration=tuple(im for i, im in enumerate(images) if i not in held),
        held_out=tuple(im for i, im in enumerate(images) if i in held),
        records=tuple(records),
        files=tuple(files),
    )


def _check_size(path: Path, image: Image, input_size: tuple[int, int]) -> None:
    height, width = image.shape[:2]
    mw, mh = input_size
    if min(width * _MIN_SIDE_SHARE, height * _MIN_SIDE_SHARE) < min(mw, mh):
        raise SourceError(
            f"calibration frames of {path} are {width}x{height}; the model takes {mw}x{mh}, "
            f"more than {_MIN_SIDE_SHARE}x larger: use footage at the camera's resolution"
        )
