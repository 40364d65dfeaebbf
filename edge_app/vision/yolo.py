"""Decoders for single-tensor YOLO-family outputs (raw candidates; the detector runs NMS).

* ``yolov5``: [1, N, 5 + C] rows of cx, cy, w, h, objectness, C class scores; score =
  objectness x best class score.
* ``yolov8``: [1, 4 + C, N] columns of cx, cy, w, h, C class scores, no objectness (also
  YOLO11).
* ``yolox``: YOLOX exported with ``decode_in_inference`` (boxes already decoded): the same
  [1, N, 5 + C] rows as YOLOv5. Shapes cannot tell the two apart, so auto-detection names such
  models ``yolov5``; ``format: yolox`` picks this name, with identical results.

Candidates that are not plausible (scores outside 0..1 or not finite, coordinates not finite,
boxes empty once clipped) are dropped and counted (``edge_app.vision.tensors``).

Coordinates may be normalised 0..1 or pixels of the model input: a decode whose candidate
coordinates exceed 2 is taken as pixels and divided by the input size from the binding. Tensors
arrive dequantised (float32) from ``dequantize``; the binding is (output position, input width,
input height).
"""

from __future__ import annotations

__all__ = ["YoloRowsDecoder", "YoloV8Decoder", "cxcywh_to_xyxy"]

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.errors import UnsupportedModelError
from edge_app.vision.tensors import (
    Decoded,
    TensorInfo,
    describe_tensors,
    finite_rows,
    has_area,
    is_probability,
)

_DTYPES = frozenset({"float32", "float16", "int8", "uint8"})
_PIXEL_COORDS = 2.0  # a candidate coordinate above this cannot be normalised 0..1


def cxcywh_to_xyxy(boxes: NDArray[np.float32], size: tuple[int, int]) -> NDArray[np.float32]:
    """(N, 4) centre x, centre y, width, height -> x1, y1, x2, y2, normalised 0..1 and clipped.

    ``size`` is the model input (width, height) in pixels, used when the boxes are in pixels.
    """
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    xyxy = np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1)
    if xyxy.size and float(np.max(np.abs(boxes))) > _PIXEL_COORDS:
        xyxy /= np.array([size[0], size[1], size[0], size[1]], np.float32)
    return np.clip(xyxy, 0.0, 1.0).astype(np.float32, copy=False)


def _finish(
    cxcywh: NDArray[np.float32],
    scores: NDArray[np.float32],
    class_ids: NDArray[np.intp],
    size: tuple[int, int],
    rejected: int,
) -> Decoded:
    """``Decoded`` of plausible candidates (boxes as centre x, y, width, height in ``size``
    pixels or normalised): boxes empty after clipping to the image are dropped and counted
    with the ``rejected`` ones, so they never reach NMS (an empty box overlaps nothing, so
    NMS would keep every one of them)."""
    xyxy = cxcywh_to_xyxy(cxcywh, size)
    area = has_area(xyxy)
    return Decoded(
        xyxy[area],
        scores[area].astype(np.float32, copy=False),
        class_ids[area].astype(np.int32),
        rejected + int(np.count_nonzero(~area)),
    )


def _single_3d(outputs: Sequence[TensorInfo]) -> tuple[int, int] | None:
    """(dim 1, dim 2) of the only output if it is [1, a, b] of a supported dtype."""
    if len(outputs) != 1:
        return None
    (t,) = outputs
    if len(t.shape) != 3 or t.shape[0] != 1 or t.dtype not in _DTYPES:
        return None
    return t.shape[1], t.shape[2]


def _empty() -> Decoded:
    return Decoded(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int32))


class _SingleOutput:
    """What both YOLO layouts share: one [1, a, b] output, bound to its position 0 and the
    model's input size (to scale pixel coordinates)."""

    name: str
    layout: str

    def layout_ok(self, outputs: Sequence[TensorInfo]) -> bool:
        raise NotImplementedError

    def bind(
        self,
        outputs: Sequence[TensorInfo],
        sample: Sequence[NDArray[Any]] | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> tuple[int, ...]:
        if not self.layout_ok(outputs):
            raise UnsupportedModelError(
                f"outputs are not the {self.name} layout ({self.layout}):\n"
                + describe_tensors(outputs)
            )
        width, height = input_size or (1, 1)
        return (0, width, height)


class YoloRowsDecoder(_SingleOutput):
    """``yolov5`` / ``yolox``: one [1, N, 5 + C] output, a row per candidate."""

    layout = "one output [1, N, 5+C]: cx, cy, w, h, objectness, class scores"
    needs_nms = True

    def __init__(self, name: str) -> None:
        self.name = name

    def layout_ok(self, outputs: Sequence[TensorInfo]) -> bool:
        dims = _single_3d(outputs)
        return dims is not None and dims[1] >= 6

    def matches(self, outputs: Sequence[TensorInfo]) -> bool:
        """Rows layout, told from YOLOv8's columns by the longer axis holding the candidates."""
        dims = _single_3d(outputs)
        return dims is not None and dims[1] >= 6 and dims[0] >= dims[1]

    def decode(
        self, arrays: Sequence[NDArray[Any]], threshold: float, binding: tuple[int, ...]
    ) -> Decoded:
        pos, width, height = binding
        rows = np.asarray(arrays[pos], np.float32)
        rows = rows.reshape(-1, rows.shape[-1])
        # score = objectness x class score <= objectness, so objectness filters first, cheaply.
        rows = rows[rows[:, 4] >= threshold]
        if not len(rows):
            return _empty()
        class_ids = np.argmax(rows[:, 5:], axis=1)
        best = rows[np.arange(len(rows)), 5 + class_ids]
        # Both factors must be probabilities before they are multiplied (1e30 x 1e30 is inf).
        sane = is_probability(rows[:, 4]) & is_probability(best) & finite_rows(rows[:, :4])
        scores = np.minimum(rows[sane, 4] * best[sane], 1.0)
        keep = scores >= threshold
        return _finish(
            rows[sane][keep, :4],
            scores[keep],
            class_ids[sane][keep],
            (width, height),
            int(np.count_nonzero(~sane)),
        )


class YoloV8Decoder(_SingleOutput):
    """``yolov8``: one [1, 4 + C, N] output, a column per candidate, no objectness."""

    name = "yolov8"
    layout = "one output [1, 4+C, N]: cx, cy, w, h, class scores"
    needs_nms = True

    def layout_ok(self, outputs: Sequence[TensorInfo]) -> bool:
        dims = _single_3d(outputs)
        return dims is not None and dims[0] >= 5

    def matches(self, outputs: Sequence[TensorInfo]) -> bool:
        dims = _single_3d(outputs)
        return dims is not None and dims[0] >= 5 and dims[1] > dims[0]

    def decode(
        self, arrays: Sequence[NDArray[Any]], threshold: float, binding: tuple[int, ...]
    ) -> Decoded:
        pos, width, height = binding
        cols = np.asarray(arrays[pos], np.float32)
        cols = cols.reshape(cols.shape[-2], cols.shape[-1])
        class_scores = cols[4:]
        best = np.max(class_scores, axis=0)
        keep = np.flatnonzero(best >= threshold)
        if not keep.size:
            return _empty()
        boxes = np.ascontiguousarray(cols[:4, keep].T)
        sane = is_probability(best[keep]) & finite_rows(boxes)
        keep = keep[sane]
        return _finish(
            boxes[sane],
            np.minimum(best[keep], 1.0),
            np.argmax(class_scores[:, keep], axis=0),
            (width, height),
            int(np.count_nonzero(~sane)),
        )
