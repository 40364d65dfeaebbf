"""Frame -> input tensor, written straight into the interpreter's input buffer.

This runs once per frame on the hot path, so it allocates nothing per frame: the frame is
resized (stretched, as the SSD models were trained) into a preallocated scratch image, and the
BGR -> RGB swap writes that image directly into the interpreter's own input tensor memory.
Quantized inputs take pixel values as they are (uint8) or shifted by -128 (int8); float inputs
are normalised to (pixel - mean) / std, by default -1..1 as the MobileNet family expects.
"""

from __future__ import annotations

__all__ = ["InputSpec", "Preprocessor"]

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.errors import UnsupportedModelError
from edge_app.vision.runtime import Interpreter

_DTYPES = ("uint8", "int8", "float32")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The image input tensor: NHWC with N = 1 and 3 channels in RGB order."""

    index: int
    name: str
    height: int
    width: int
    dtype: str
    scale: float
    zero_point: int
    channels: int = 3

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> InputSpec:
        """Build from ``interpreter.get_input_details()[0]``.

        Raises ``UnsupportedModelError`` for anything but a [1, H, W, 3] uint8/int8/float32 input.
        """
        shape = tuple(int(d) for d in details["shape"])
        dtype = np.dtype(details["dtype"]).name
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or min(shape) < 1:
            raise UnsupportedModelError(
                f"input {details['name']} has shape {list(shape)}; edge-app feeds one RGB image "
                "as [1, height, width, 3] (NHWC)"
            )
        if dtype not in _DTYPES:
            raise UnsupportedModelError(
                f"input {details['name']} is {dtype}; supported input types: {', '.join(_DTYPES)}"
            )
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(
            index=int(details["index"]),
            name=str(details["name"]),
            height=shape[1],
            width=shape[2],
            dtype=dtype,
            scale=float(scale),
            zero_point=int(zero_point),
        )

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height


class Preprocessor:
    """Writes BGR uint8 frames into an input tensor. Not thread-safe.

    ``target`` returns a fresh writable view of the [1, H, W, 3] input buffer on each call
    (``interpreter.tensor(index)``; see ``for_interpreter``), so no view outlives a frame.
    ``float_mean`` / ``float_std`` apply to float32 inputs only.
    """

    def __init__(
        self,
        spec: InputSpec,
        target: Callable[[], NDArray[Any]],
        *,
        interpolation: int = cv2.INTER_LINEAR,
        float_mean: float = 127.5,
        float_std: float = 127.5,
    ) -> None:
        self.spec = spec
        self._size = spec.size
        self._shape = (spec.height, spec.width, 3)
        self._target = target
        self._interpolation = interpolation
        self._scratch = np.empty(self._shape, np.uint8)
        self._rgb = np.empty(self._shape, np.uint8) if spec.dtype != "uint8" else None
        self._mean = float_mean
        self._inv_std = 1.0 / float_std

    @classmethod
    def for_interpreter(cls, interpreter: Interpreter, spec: InputSpec) -> Preprocessor:
        """A preprocessor writing into ``interpreter``'s input (borrowed, not owned)."""
        # The runtime refuses to invoke while views of its memory are alive, hence a callable
        # that hands out a fresh view per frame rather than one view kept for good.
        return cls(spec, interpreter.tensor(spec.index))

    def __call__(self, image_bgr: NDArray[np.uint8]) -> None:
        """Resize ``image_bgr`` (H x W x 3, uint8, BGR; any size) into the input tensor."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise ValueError(
                f"expected a BGR uint8 image of shape (height, width, 3), got {image_bgr.dtype} "
                f"{image_bgr.shape}"
            )
        resized: NDArray[Any]
        if image_bgr.shape == self._shape:
            resized = image_bgr
        else:
            resized = cv2.resize(
                image_bgr, self._size, dst=self._scratch, interpolation=self._interpolation
            )
        target = self._target()[0]
        if self._rgb is None:  # uint8: the pixels themselves, swapped in place into the tensor
            cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=target)
            return
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=self._rgb)
        if self.spec.dtype == "int8":
            # p - 128 for p in 0..255 is p with its top bit flipped, read as int8.
            np.bitwise_xor(rgb, np.uint8(0x80), out=target.view(np.uint8))
        else:
            np.subtract(rgb, self._mean, out=target, dtype=np.float32)
            np.multiply(target, self._inv_std, out=target)
