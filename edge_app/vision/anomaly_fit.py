"""Fitting an anomaly model on normal footage, calibrating its threshold, and evaluating it.

``fit_anomaly`` takes frames of good parts per source (no labels), keeps the first part of each
source for the memory bank and holds out the last ``holdout`` share: frames next to each other
in a clip are near copies, so a held-out *tail* is what tells how a new stretch of normal
footage scores. The threshold is the held-out scores' ``1 - target_far`` quantile times
``margin``. ``evaluate`` measures a fitted model on normal frames and on frames with known
defect boxes: frame-level AUROC, false-alarm share and localisation hit rate.
"""

from __future__ import annotations

__all__ = ["Evaluation", "FitOptions", "Labelled", "evaluate", "fit_anomaly"]

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edge_app.errors import SourceError
from edge_app.models import sha256_file
from edge_app.vision.anomaly import (
    KIND,
    AnomalyModel,
    AnomalyScorer,
    Region,
    nearest,
    normalise_exposure,
)
from edge_app.vision.features import FeatureExtractor

Progress = Callable[[str, int, int], None]
"""Called as ``(stage, done, total)``; stage is ``extract`` or ``calibrate``."""


@dataclass(frozen=True, slots=True)
class FitOptions:
    """How to fit: ``region`` (normalised x1, y1, x2, y2; None: whole frame), ``dims`` of the
    projection, ``bank_size`` (most normal patches kept), ``holdout`` (share of each source's
    frames held out for calibration), ``target_far`` (false alarms per inspected normal frame
    aimed at), ``margin`` (factor above the quantile), ``seed`` (of the projection)."""

    region: Region | None = None
    dims: int = 128
    bank_size: int = 2048
    holdout: float = 0.2
    target_far: float = 0.001
    margin: float = 1.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0 or not 0.0 < self.target_far < 1.0:
            raise ValueError("holdout and target_far must lie strictly between 0 and 1")
        if self.dims < 8 or self.bank_size < 16 or self.margin < 1.0:
            raise ValueError("dims >= 8, bank_size >= 16 and margin >= 1 are required")


def _coreset(points: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    """Greedy k-centre subset of ``points``: each pick is the point farthest from those kept,
    so rare normal appearances stay in the bank while repeats of common ones go. Distances
    for picking use the first 32 projected dimensions (a projection of its own: 4x less
    work, and the picks barely change)."""
    if len(points) <= size:
        return points
    small = np.ascontiguousarray(points[:, :32])
    norms = (small * small).sum(axis=1)
    chosen = np.empty(size, np.int64)
    chosen[0] = 0
    # squared distances by |a|^2 + |b|^2 - 2ab: one matrix-vector product per pick
    nearest_sq = norms + norms[0] - 2.0 * (small @ small[0])
    for i in range(1, size):
        pick = int(nearest_sq.argmax())
        chosen[i] = pick
        np.minimum(nearest_sq, norms + norms[pick] - 2.0 * (small @ small[pick]), out=nearest_sq)
    return points[chosen]


def fit_anomaly(
    sources: Sequence[tuple[str, Iterable[NDArray[np.uint8]]]],
    extractor: FeatureExtractor,
    options: FitOptions,
    progress: Progress | None = None,
) -> AnomalyModel:
    """Fit on ``sources`` (name, BGR frames of normal scenes). ``SourceError`` when there are
    too few frames to learn and calibrate on (at least 2 per source, 4 in all)."""
    started = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    channels = extractor.layer.channels
    projection = (rng.standard_normal((channels, options.dims)) / np.sqrt(options.dims)).astype(
        np.float32
    )
    train: list[NDArray[np.float32]] = []
    held: list[NDArray[np.float32]] = []
    lineage: list[dict[str, object]] = []
    crop = options.region
    done = 0
    for name, frames in sources:
        grids = []
        for image in frames:
            grids.append(_project(extractor, image, crop, projection))
            done += 1
            if progress is not None:
                progress("extract", done, 0)
        keep = len(grids) - max(1, round(len(grids) * options.holdout)) if len(grids) >= 2 else 0
        train.extend(grids[:keep])
        held.extend(grids[keep:])
        lineage.append({"source": name, "frames": len(grids), "train": keep})
    if len(train) + len(held) == 0:
        raise SourceError("no frames to learn from: give videos or images of normal scenes")
    if len(train) < 2 or len(held) < 2:
        raise SourceError(
            f"{len(train) + len(held)} frame(s) are too few to learn and calibrate on; give at "
            "least 2 frames per source and 4 in all (a few minutes of video is best)"
        )
    bank = _coreset(np.concatenate(train), options.bank_size)
    bank_sq = (bank * bank).sum(axis=1)
    scores = []
    for i, patches in enumerate(held):
        scores.append(float(nearest(patches, bank, bank_sq).max()))
        if progress is not None:
            progress("calibrate", i + 1, len(held))
    held_scores = np.asarray(scores)
    threshold = float(np.quantile(held_scores, 1.0 - options.target_far)) * options.margin
    meta = {
        "kind": KIND,
        "extractor": {
            "file": extractor.path.name,
            "sha256": sha256_file(extractor.path),
            "layer": extractor.layer.name,
            "grid": [extractor.layer.rows, extractor.layer.cols],
        },
        "crop": list(crop) if crop is not None else None,
        "sources": lineage,
        "frames": {"train": len(train), "held_out": len(held)},
        "bank": {"patches": int(sum(len(t) for t in train)), "kept": len(bank)},
        "calibration": {
            "target_far": options.target_far,
            "margin": options.margin,
            "held_out_mean": round(float(held_scores.mean()), 4),
            "held_out_p95": round(float(np.quantile(held_scores, 0.95)), 4),
            "held_out_max": round(float(held_scores.max()), 4),
            "held_out_far": float((held_scores >= threshold).mean()),
        },
        "fit_s": round(time.perf_counter() - started, 2),
    }
    return AnomalyModel(bank, projection, threshold, meta)


def _project(
    extractor: FeatureExtractor,
    image: NDArray[np.uint8],
    crop: Region | None,
    projection: NDArray[np.float32],
) -> NDArray[np.float32]:
    if crop is not None:
        h, w = image.shape[:2]
        image = image[
            round(crop[1] * h) : round(crop[3] * h), round(crop[0] * w) : round(crop[2] * w)
        ]
    grid = extractor.extract(normalise_exposure(image))
    return np.asarray(grid.reshape(-1, grid.shape[2]) @ projection, np.float32)


@dataclass(frozen=True, slots=True)
class Labelled:
    """A frame with defects at ``boxes`` (normalised x1, y1, x2, y2 of the frame)."""

    image: NDArray[np.uint8]
    boxes: tuple[Region, ...]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """``auroc`` (normal vs defect frames, by raw score), ``false_alarm_rate`` (share of normal
    frames at or above the threshold), ``detected`` (share of defect frames at or above it),
    ``localisation`` (share of defect frames whose peak box covers a defect's centre),
    ``ms_per_frame`` (mean scoring time), and the counts."""

    auroc: float
    false_alarm_rate: float
    detected: float
    localisation: float
    ms_per_frame: float
    normal_frames: int
    defect_frames: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def auroc(normal: Sequence[float], defect: Sequence[float]) -> float:
    """Probability that a defect frame outscores a normal one (ties count half)."""
    a, b = np.asarray(defect)[:, None], np.asarray(normal)[None, :]
    return float((a > b).mean() + 0.5 * (a == b).mean())


def _covers(box: Region, target: Region) -> bool:
    cx, cy = (target[0] + target[2]) / 2.0, (target[1] + target[3]) / 2.0
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def evaluate(
    scorer: AnomalyScorer, normal: Iterator[NDArray[np.uint8]], defects: Iterable[Labelled]
) -> Evaluation:
    """Score every frame; ``SourceError`` unless there is at least one of each kind."""
    threshold = scorer.model.threshold
    normal_raw: list[float] = []
    defect_raw: list[float] = []
    hits = 0
    spent = 0.0
    for image in normal:
        t0 = time.perf_counter()
        normal_raw.append(scorer.score(image).raw)
        spent += time.perf_counter() - t0
    for item in defects:
        t0 = time.perf_counter()
        result = scorer.score(item.image)
        spent += time.perf_counter() - t0
        defect_raw.append(result.raw)
        hits += any(_covers(result.box, b) for b in item.boxes)
    if not normal_raw or not defect_raw:
        raise SourceError("evaluation needs normal frames and frames with labelled defects")
    count = len(normal_raw) + len(defect_raw)
    return Evaluation(
        auroc=round(auroc(normal_raw, defect_raw), 4),
        false_alarm_rate=round(float(np.mean(np.asarray(normal_raw) >= threshold)), 4),
        detected=round(float(np.mean(np.asarray(defect_raw) >= threshold)), 4),
        localisation=round(hits / len(defect_raw), 4),
        ms_per_frame=round(spent / count * 1000.0, 2),
        normal_frames=len(normal_raw),
        defect_frames=len(defect_raw),
    )
