"""Pure geometry on normalised coordinates (0..1 of the frame)."""

from __future__ import annotations

__all__ = ["anchor_points", "inside_share", "points_in_polygon", "similar_size"]

import numpy as np
from numpy.typing import NDArray


def anchor_points(xyxy: NDArray[np.float32]) -> NDArray[np.float32]:
    """Bottom-centre of each box, (N, 2): where an object stands, the usual zone anchor."""
    return np.stack(((xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]), axis=1)


def points_in_polygon(
    points: NDArray[np.float32], polygon: NDArray[np.float32]
) -> NDArray[np.bool_]:
    """For each of N points (N, 2), whether it lies inside the polygon (M, 2) (even-odd rule).

    Vectorised ray casting: O(N*M) in numpy, no Python loop over points. Points exactly on an
    edge may fall either way.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    x = points[:, 0:1]  # (N, 1)
    y = points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]  # (M,)
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)  # (N, M): edge crosses the horizontal line through the point
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = straddles & (x < x_cross)
    inside: NDArray[np.bool_] = (np.count_nonzero(crossings, axis=1) % 2) == 1
    return inside


def inside_share(box: NDArray[np.float32], others: NDArray[np.float32]) -> NDArray[np.float32]:
    """Share of ``box``'s area (4,: x1 y1 x2 y2) lying inside each of ``others`` (N, 4)."""
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-9)
    share: NDArray[np.float32] = (w * h / area).astype(np.float32)
    return share


def similar_size(
    a: NDArray[np.float32],
    b: NDArray[np.float32],
    height_ratio: float = 1.5,
    width_ratio: float | None = 3.0,
) -> NDArray[np.bool_]:
    """(N, M): whether box ``a[i]`` and box ``b[j]`` (x1 y1 x2 y2) could be one object seen
    twice: heights within ``height_ratio`` times each other and widths within
    ``width_ratio`` (None: any; a person turning, or partly hidden, changes width more than
    height)."""

    def ratio(x: NDArray[np.float32], y: NDArray[np.float32]) -> NDArray[np.float32]:
        x, y = np.maximum(x, 1e-6)[:, None], np.maximum(y, 1e-6)[None, :]
        out: NDArray[np.float32] = np.maximum(x / y, y / x)
        return out

    same: NDArray[np.bool_] = ratio(a[:, 3] - a[:, 1], b[:, 3] - b[:, 1]) <= height_ratio
    if width_ratio is not None:
        same &= ratio(a[:, 2] - a[:, 0], b[:, 2] - b[:, 0]) <= width_ratio
    return same
