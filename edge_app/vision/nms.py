"""Per-class non-maximum suppression, vectorised with numpy.

Raw YOLO-family outputs carry thousands of overlapping candidates per object; SSD models run NMS
inside the graph. The classic "batched NMS" trick makes one greedy pass serve every class at
once: each class's boxes are shifted by a class-dependent offset larger than any coordinate, so
boxes of different classes can never overlap and never suppress each other.
"""

from __future__ import annotations

__all__ = ["box_iou", "nms_per_class"]

import numpy as np
from numpy.typing import NDArray


def box_iou(box: NDArray[np.float32], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
    """Intersection over union of one x1, y1, x2, y2 ``box`` (4,) with each of ``boxes`` (N, 4).

    Any consistent unit works; degenerate boxes (zero area) have IoU 0 with everything.
    """
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    out = np.zeros(len(boxes), np.float32)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def nms_per_class(
    xyxy: NDArray[np.float32],
    scores: NDArray[np.float32],
    class_ids: NDArray[np.int32],
    iou_threshold: float,
    max_detections: int = 100,
) -> NDArray[np.intp]:
    """Indices of the boxes kept by greedy NMS within each class, best score first.

    A box is dropped when its IoU with a better-scoring kept box of the same class is greater
    than ``iou_threshold`` (0..1). At most ``max_detections`` indices are returned. Pure: the
    inputs are not modified.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in 0..1, got {iou_threshold}")
    if len(scores) == 0 or max_detections <= 0:
        return np.empty(0, np.intp)
    order = np.argsort(-scores, kind="stable")
    span = float(np.max(xyxy) - min(float(np.min(xyxy)), 0.0)) + 1.0
    shifted = xyxy[order] + (class_ids[order].astype(np.float32) * span)[:, None]
    keep: list[int] = []
    alive = np.ones(len(order), bool)
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= max_detections:
            break
        rest = i + 1 + np.flatnonzero(alive[i + 1 :])
        if rest.size:
            overlap = box_iou(shifted[i], shifted[rest])
            alive[rest[overlap > iou_threshold]] = False
    return np.asarray(keep, np.intp)
