"""Tensor descriptions, the decoder result type, dequantisation and the plausibility checks
shared by every decoder.

A broken or hostile model can output anything: NaN, 1e30, negative sizes. Decoders keep only
candidates whose scores are probabilities (finite, 0..1; a dequantisation rounding step above 1
is clamped to 1), whose coordinates are finite and whose box, once clipped to the image, has
positive width and height. What they drop is counted in ``Decoded.rejected``.
"""

from __future__ import annotations

__all__ = [
    "MAX_COORDINATE",
    "SCORE_SLACK",
    "Decoded",
    "TensorInfo",
    "dequantize",
    "describe_tensors",
    "finite_rows",
    "has_area",
    "is_probability",
]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """What the interpreter says about one tensor; ``dtype`` is a numpy dtype name."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> TensorInfo:
        """Build from one entry of ``get_input_details()`` / ``get_output_details()``."""
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(
            name=str(details["name"]),
            index=int(details["index"]),
            shape=tuple(int(d) for d in details["shape"]),
            dtype=np.dtype(details["dtype"]).name,
            scale=float(scale),
            zero_point=int(zero_point),
        )

    def __str__(self) -> str:
        quant = f" (scale {self.scale:g}, zero point {self.zero_point})" if self.scale else ""
        return f"{self.name} {list(self.shape)} {self.dtype}{quant}"


class Decoded(NamedTuple):
    """Decoder result: ``xyxy`` float32 (N, 4) normalised 0..1, ``scores`` float32 (N,) in
    0..1, ``class_ids`` int32 (N,); ``rejected``: candidates at or above the threshold that
    were dropped as implausible (score not a probability, coordinates not finite, empty box)."""

    xyxy: NDArray[np.float32]
    scores: NDArray[np.float32]
    class_ids: NDArray[np.int32]
    rejected: int = 0


SCORE_SLACK = 1e-3
"""How far above 1 a score may lie and still be a probability (a dequantisation rounding
step, e.g. 255 x 0.003922); such scores are clamped to 1."""

MAX_COORDINATE = 1e6
"""Largest box coordinate taken seriously, in pixels or normalised units: far beyond any model
input, and small enough that centre +- size / 2 cannot overflow float32."""


def is_probability(values: NDArray[np.float32]) -> NDArray[np.bool_]:
    """True where ``values`` are finite and within 0..1 + ``SCORE_SLACK``."""
    return np.isfinite(values) & (values >= 0.0) & (values <= 1.0 + SCORE_SLACK)


def finite_rows(values: NDArray[np.float32]) -> NDArray[np.bool_]:
    """True for each row of (N, K) ``values`` whose entries are all finite and at most
    ``MAX_COORDINATE`` in size."""
    small: NDArray[np.bool_] = np.all(np.abs(values) <= MAX_COORDINATE, axis=1)
    return small  # NaN compares False, so NaN rows are not small


def has_area(xyxy: NDArray[np.float32]) -> NDArray[np.bool_]:
    """True where an x1, y1, x2, y2 box has positive width and height (not empty, not
    inverted; NaN is neither)."""
    return (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])


def dequantize(array: NDArray[Any], info: TensorInfo) -> NDArray[np.float32]:
    """``array`` as float32 real values: ``(q - zero_point) * scale`` for a quantized (int8,
    uint8, int16) tensor with a scale, a plain cast otherwise (float16, float32). Returns a new
    array; ``array`` (often the interpreter's own buffer) is not kept."""
    if info.scale and array.dtype.kind in "iu":
        out = array.astype(np.float32)
        out -= np.float32(info.zero_point)
        out *= np.float32(info.scale)
        return out
    return np.array(array, np.float32, copy=True)


def describe_tensors(outputs: Sequence[TensorInfo], inputs: Sequence[TensorInfo] = ()) -> str:
    """Indented lines naming each tensor (name, shape, dtype), for error messages."""
    lines: list[str] = []
    if inputs:
        lines.append("  inputs:")
        lines.extend(f"    - {t}" for t in inputs)
    lines.append("  outputs:")
    lines.extend(f"    - {t}" for t in outputs)
    return "\n".join(lines)
