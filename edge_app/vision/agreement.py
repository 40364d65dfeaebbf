"""How closely one model follows another: per output numeric error, and detection agreement
on the same frames (boxes matched by IoU and label, score deltas, missed and extra detections).
Pure functions on arrays and ``Detections``; the converter (``edge_app.convert``) and the
over-the-air updater (``edge_app.updates``) both use them."""

from __future__ import annotations

__all__ = ["MATCH_IOU", "Agreement", "OutputError", "match_detections", "output_error"]

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.domain import Detections
from edge_app.vision.tracker import iou_matrix

MATCH_IOU = 0.5
"""Two boxes of the same label overlapping at least this much are the same detection."""


@dataclass(frozen=True, slots=True)
class OutputError:
    """One output's numeric error over the held-out frames, in the output's own units;
    ``relative`` is the mean error over the source output's value range (0..1)."""

    name: str
    max_abs: float
    mean_abs: float
    relative: float


def output_error(
    name: str, source: list[NDArray[np.float32]], converted: list[NDArray[np.float32]]
) -> OutputError:
    """Compare the same output over several frames (equal shapes, float)."""
    a = np.stack(source).astype(np.float64)
    b = np.stack(converted).astype(np.float64)
    diff = np.abs(a - b)
    span = float(a.max() - a.min()) or 1.0
    mean = float(diff.mean())
    return OutputError(name, float(diff.max()), mean, mean / span)


@dataclass(frozen=True, slots=True)
class Agreement:
    """Detections of the converted model against the source's, summed over frames.

    ``agreement`` is the F1 score of the matching: 2 x matched / (2 x matched + missed +
    extra), 1.0 when neither model detects anything (nothing to disagree on; ``frames``
    and ``source_detections`` then tell that nothing was measured).
    """

    frames: int
    source_detections: int
    matched: int
    missed: int
    extra: int
    mean_iou: float
    mean_score_delta: float
    max_score_delta: float

    @property
    def agreement(self) -> float:
        total = 2 * self.matched + self.missed + self.extra
        return 1.0 if total == 0 else 2 * self.matched / total

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"agreement": round(self.agreement, 4)}


def match_detections(pairs: list[tuple[Detections, Detections]]) -> Agreement:
    """Greedy matching per frame of (source, converted) detections: highest IoU first, same
    class id, IoU >= ``MATCH_IOU``."""
    matched = missed = extra = 0
    ious: list[float] = []
    deltas: list[float] = []
    sources = 0
    for source, converted in pairs:
        sources += len(source.scores)
        n, m = len(source.scores), len(converted.scores)
        if n == 0 or m == 0:
            missed, extra = missed + n, extra + m
            continue
        iou = iou_matrix(source.xyxy, converted.xyxy)
        iou[source.class_ids[:, None] != converted.class_ids[None, :]] = 0.0
        used_a: set[int] = set()
        used_b: set[int] = set()
        for flat in np.argsort(-iou, axis=None):
            i, j = divmod(int(flat), m)
            if iou[i, j] < MATCH_IOU:
                break
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            ious.append(float(iou[i, j]))
            deltas.append(abs(float(source.scores[i]) - float(converted.scores[j])))
        matched += len(used_a)
        missed += n - len(used_a)
        extra += m - len(used_b)
    return Agreement(
        frames=len(pairs),
        source_detections=sources,
        matched=matched,
        missed=missed,
        extra=extra,
        mean_iou=float(np.mean(ious)) if ious else 0.0,
        mean_score_delta=float(np.mean(deltas)) if deltas else 0.0,
        max_score_delta=float(np.max(deltas)) if deltas else 0.0,
    )
