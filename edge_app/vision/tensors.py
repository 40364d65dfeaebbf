"""Tensor descriptions, the decoder result type and dequantisation, shared by every decoder."""

from __future__ import annotations

__all__ = ["Decoded", "TensorInfo", "dequantize", "describe_tensors"]

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
    """Decoder result: ``xyxy`` float32 (N, 4) normalised 0..1, ``scores`` float32 (N,),
    ``class_ids`` int32 (N,)."""

    xyxy: NDArray[np.float32]
    scores: NDArray[np.float32]
    class_ids: NDArray[np.int32]


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
