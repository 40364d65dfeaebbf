"""Output decoders: turn a detector's raw output tensors into boxes, scores and class ids.

A decoder is chosen by the shapes and types of the model's outputs (``detect_format``), from an
explicit registry, ``DECODERS``. Each decoder

* ``matches(outputs)``: does this output layout belong to my format?
* ``bind(outputs, sample, input_size)``: which output is which (a tuple of output positions in
  the decoder's own canonical order, then any format-specific integers such as the input size),
  settled once per model; ``sample`` is the output of one invoke, for layouts that shapes alone
  cannot settle;
* ``decode(arrays, threshold, binding)``: pure and vectorised, arrays (dequantised to float32,
  see ``dequantize``) in the model's output order -> ``Decoded(xyxy, scores, class_ids)`` with
  ``xyxy`` normalised 0..1 of the model input (the detector undoes any letterbox);
* ``needs_nms``: True when the output holds raw overlapping candidates (YOLO family), so the
  detector runs ``nms_per_class`` after decoding.

Known formats: ``ssd_postprocess`` (SSD MobileNet v1/v2, MobileDet, EfficientDet-Lite with the
4-output post-processing op), ``yolov5``, ``yolov8`` (also YOLO11) and ``yolox`` (see
``edge_app.vision.yolo``). A new format is one more entry in ``DECODERS``.
"""

from __future__ import annotations

__all__ = [
    "DECODERS",
    "Decoded",
    "OutputDecoder",
    "SsdPostprocessDecoder",
    "TensorInfo",
    "YoloRowsDecoder",
    "YoloV8Decoder",
    "decode_ssd_postprocess",
    "dequantize",
    "describe_tensors",
    "detect_format",
    "get_decoder",
]

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge_app.errors import UnsupportedModelError
from edge_app.vision.tensors import (
    Decoded,
    TensorInfo,
    dequantize,
    describe_tensors,
    finite_rows,
    has_area,
    is_probability,
)
from edge_app.vision.yolo import YoloRowsDecoder, YoloV8Decoder

log = logging.getLogger("edge_app.vision")


class OutputDecoder(Protocol):
    """One output format (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def needs_nms(self) -> bool: ...

    def matches(self, outputs: Sequence[TensorInfo]) -> bool: ...

    def bind(
        self,
        outputs: Sequence[TensorInfo],
        sample: Sequence[NDArray[Any]] | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> tuple[int, ...]: ...

    def decode(
        self, arrays: Sequence[NDArray[Any]], threshold: float, binding: tuple[int, ...]
    ) -> Decoded: ...


_CLASS_ID_LIMIT = 2.0**31  # class ids become int32


def decode_ssd_postprocess(
    boxes: NDArray[Any],
    classes: NDArray[Any],
    scores: NDArray[Any],
    count: NDArray[Any],
    threshold: float,
) -> Decoded:
    """Decode the four ``TFLite_Detection_PostProcess`` outputs.

    ``boxes`` (1, N, 4) as ymin, xmin, ymax, xmax normalised; ``classes`` and ``scores`` (1, N);
    ``count`` (1,): how many leading rows are valid. Keeps valid rows with score >= ``threshold``,
    clips boxes to 0..1 and returns them as x1, y1, x2, y2, in the model's (score) order.
    Implausible rows (score not in 0..1, a coordinate not finite, a class id not a valid
    index, a box empty once clipped) are dropped and counted in ``rejected``.
    """
    raw = float(count.reshape(-1)[0])
    n = max(0, min(int(raw), scores.size)) if np.isfinite(raw) else 0
    row_scores = scores.reshape(-1)[:n]
    keep = np.flatnonzero(row_scores >= threshold)
    yxyx = boxes.reshape(-1, 4)[keep]
    ids = classes.reshape(-1)[keep]
    xyxy = np.clip(yxyx[:, (1, 0, 3, 2)], 0.0, 1.0).astype(np.float32, copy=False)
    sane = is_probability(row_scores[keep]) & finite_rows(yxyx) & has_area(xyxy)
    sane &= (ids >= 0) & (ids < _CLASS_ID_LIMIT)  # NaN compares False: no cast of NaN to int
    return Decoded(
        xyxy[sane],
        np.minimum(row_scores[keep][sane], 1.0).astype(np.float32, copy=False),
        ids[sane].astype(np.int32),
        int(np.count_nonzero(~sane)),
    )


class SsdPostprocessDecoder:
    """TensorFlow's ``TFLite_Detection_PostProcess`` layout (SSD MobileNet, EfficientDet-Lite).

    Four float32 outputs: boxes [1, N, 4], classes [1, N], scores [1, N], count [1], in any
    order. Binding order is (boxes, classes, scores, count).
    """

    name = "ssd_postprocess"
    needs_nms = False

    def matches(self, outputs: Sequence[TensorInfo]) -> bool:
        if len(outputs) != 4 or any(t.dtype != "float32" for t in outputs):
            return False
        shapes = sorted((t.shape for t in outputs), key=len)
        count, vec_a, vec_b, boxes = shapes
        return (
            count == (1,)
            and len(vec_a) == 2
            and vec_a == vec_b
            and vec_a[0] == 1
            and vec_a[1] > 0
            and boxes == (1, vec_a[1], 4)
        )

    def bind(
        self,
        outputs: Sequence[TensorInfo],
        sample: Sequence[NDArray[Any]] | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> tuple[int, ...]:
        if not self.matches(outputs):
            raise UnsupportedModelError(
                f"outputs are not the {self.name} layout:\n{describe_tensors(outputs)}"
            )
        boxes = next(i for i, t in enumerate(outputs) if len(t.shape) == 3)
        count = next(i for i, t in enumerate(outputs) if len(t.shape) == 1)
        first, second = (i for i, t in enumerate(outputs) if len(t.shape) == 2)
        classes, scores = _classes_and_scores(outputs, first, second, sample)
        return (boxes, classes, scores, count)

    def decode(
        self, arrays: Sequence[NDArray[Any]], threshold: float, binding: tuple[int, ...]
    ) -> Decoded:
        boxes, classes, scores, count = binding
        return decode_ssd_postprocess(
            arrays[boxes], arrays[classes], arrays[scores], arrays[count], threshold
        )


_POSTPROCESS_NAME = re.compile(r"^(?P<base>.*TFLite_Detection_PostProcess)(:(?P<k>\d+))?$")


def _classes_and_scores(
    outputs: Sequence[TensorInfo], a: int, b: int, sample: Sequence[NDArray[Any]] | None
) -> tuple[int, int]:
    """Tell the classes output from the scores output, both [1, N] float32."""
    # 1. Names. The TF1 op names its outputs base, base:1 (classes), base:2 (scores), base:3.
    suffix = {}
    for i in (a, b):
        match = _POSTPROCESS_NAME.match(outputs[i].name)
        suffix[i] = match.group("k") if match else None
    if suffix[a] in {"1", "2"} and suffix[b] in {"1", "2"} and suffix[a] != suffix[b]:
        return (a, b) if suffix[a] == "1" else (b, a)
    named = {i: outputs[i].name.lower() for i in (a, b)}
    if "score" in named[a] and "class" in named[b]:
        return b, a
    if "class" in named[a] and "score" in named[b]:
        return a, b
    # 2. Values of one invoke: class ids are whole numbers, scores lie in 0..1 and rarely are.
    if sample is not None:
        whole = {i: bool(np.all(sample[i] == np.round(sample[i]))) for i in (a, b)}
        above_one = {i: bool(np.any(sample[i] > 1.0)) for i in (a, b)}
        if whole[a] != whole[b]:
            return (a, b) if whole[a] else (b, a)
        if above_one[a] != above_one[b]:
            return (a, b) if above_one[a] else (b, a)
    # 3. The op's own order (classes before scores), which most converted models keep.
    log.warning(
        "cannot tell classes from scores by name or value; assuming %s is classes",
        outputs[a].name,
    )
    return a, b


DECODERS: dict[str, OutputDecoder] = {
    SsdPostprocessDecoder.name: SsdPostprocessDecoder(),
    "yolov5": YoloRowsDecoder("yolov5"),
    YoloV8Decoder.name: YoloV8Decoder(),
    # Same layout as yolov5, so never the auto-detected name; chosen with `format: yolox`.
    "yolox": YoloRowsDecoder("yolox"),
}
"""Every known output format by name, tried in this order by ``detect_format``."""


def get_decoder(name: str) -> OutputDecoder:
    """The decoder registered as ``name``; ``UnsupportedModelError`` listing the known ones."""
    try:
        return DECODERS[name]
    except KeyError:
        raise UnsupportedModelError(
            f"unknown model format {name!r}; known formats: {', '.join(DECODERS)}"
        ) from None


def detect_format(
    outputs: Sequence[TensorInfo], inputs: Sequence[TensorInfo] = (), model: str = "the model"
) -> str:
    """Name of the first decoder in ``DECODERS`` that matches ``outputs``.

    Raises ``UnsupportedModelError`` naming every input and output tensor when none matches.
    """
    for name, decoder in DECODERS.items():
        if decoder.matches(outputs):
            return name
    raise UnsupportedModelError(
        f"{model} has an output layout no decoder understands "
        f"(known formats: {', '.join(DECODERS)}):\n{describe_tensors(outputs, inputs)}\n"
        "edge-app decodes SSD models with TFLite_Detection_PostProcess (4 float32 outputs: "
        "boxes [1,N,4], classes [1,N], scores [1,N], count [1]), YOLOv5/YOLOX ([1,N,5+C]) and "
        "YOLOv8/YOLO11 ([1,4+C,N]) single-output models; re-export the model in one of these "
        "layouts (without extra state tensors), or set `format:` if detection guessed wrong."
    )
