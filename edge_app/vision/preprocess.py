"""Frame -> input tensor, written straight into the interpreter's input buffer.

This runs once per frame on the hot path, so it allocates nothing per frame in the common case:
the frame is resized into a preallocated scratch image, and the colour conversion writes that
image directly into the interpreter's own input tensor memory.

``PreprocessOptions`` say how: ``stretch`` (as the SSD models were trained) or ``letterbox``
(aspect kept, padded with ``pad_value``, image centred or top-left, as YOLO models were
trained); ``rgb`` or ``bgr`` channel order; and for float inputs the range ``-1..1``
(MobileNet family), ``0..1`` (YOLO family) or ``0..255``. Quantized inputs take pixel values as
they are (uint8) or shifted by -128 (int8), which is what exporters' input quantization encodes.
``BoxMap`` undoes the letterbox on the decoded boxes.

The work can also be split in two: ``Preprocessor.prepare`` (resize and channel order into a
new array; thread-safe, so a video source's reader thread runs it while the frame is still in
cache) and ``Preprocessor.load`` (that array into the input tensor: a 270 KB copy for a 300 x
300 uint8 input). The detector thread then only loads and invokes.
"""

from __future__ import annotations

__all__ = [
    "BoxMap",
    "InputSpec",
    "PreparedInput",
    "PreprocessOptions",
    "Preprocessor",
    "default_options",
    "letterbox_geometry",
]

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.errors import UnsupportedModelError
from edge_app.vision.runtime import Interpreter

_DTYPES = ("uint8", "int8", "float32")
_RANGES: dict[str, tuple[float, float]] = {  # (mean, std): value = (pixel - mean) / std
    "-1..1": (127.5, 127.5),
    "0..1": (0.0, 255.0),
    "0..255": (0.0, 1.0),
}

Resize = Literal["stretch", "letterbox"]
Align = Literal["center", "top_left"]
ChannelOrder = Literal["rgb", "bgr"]
InputRange = Literal["-1..1", "0..1", "0..255"]


@dataclass(frozen=True, slots=True)
class PreprocessOptions:
    """How a frame becomes the model input (see the module docstring)."""

    resize: Resize = "stretch"
    pad_value: int = 114
    align: Align = "center"
    channel_order: ChannelOrder = "rgb"
    input_range: InputRange = "-1..1"

    def __post_init__(self) -> None:
        if not 0 <= self.pad_value <= 255:
            raise ValueError(f"pad_value must lie in 0..255, got {self.pad_value}")
        if self.input_range not in _RANGES:
            raise ValueError(
                f"input_range must be one of {', '.join(_RANGES)}, got {self.input_range!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for ``models inspect``."""
        return asdict(self)


def default_options(fmt: str) -> PreprocessOptions:
    """How the reference exporter of output format ``fmt`` feeds its models: SSD (TF Object
    Detection API) stretch, RGB, -1..1; YOLOv5 and YOLOv8 (Ultralytics) letterbox centred with
    pad 114, RGB, 0..1; YOLOX (Megvii's tools, which read frames with OpenCV and do not
    normalise) letterbox top-left with pad 114, BGR, 0..255."""
    if fmt == "yolox":
        return PreprocessOptions(
            resize="letterbox", align="top_left", channel_order="bgr", input_range="0..255"
        )
    if fmt.startswith("yolo"):
        return PreprocessOptions(resize="letterbox", pad_value=114, input_range="0..1")
    return PreprocessOptions()


def letterbox_geometry(
    frame_size: tuple[int, int], model_size: tuple[int, int], align: Align = "center"
) -> tuple[int, int, int, int]:
    """(width, height, x offset, y offset) in model pixels of a frame letterboxed into the
    model input. Sizes are (width, height) in pixels; the scale keeps the aspect ratio."""
    fw, fh = frame_size
    mw, mh = model_size
    scale = min(mw / fw, mh / fh)
    w, h = max(1, min(mw, round(fw * scale))), max(1, min(mh, round(fh * scale)))
    if align == "top_left":
        return w, h, 0, 0
    return w, h, (mw - w) // 2, (mh - h) // 2


@dataclass(frozen=True, slots=True)
class BoxMap:
    """Affine map from boxes normalised to the model input to boxes normalised to the frame:
    ``frame = model * scale + offset`` per axis. Identity for a stretched resize."""

    scale_x: float = 1.0
    scale_y: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0

    @classmethod
    def for_letterbox(
        cls, frame_size: tuple[int, int], model_size: tuple[int, int], align: Align = "center"
    ) -> BoxMap:
        """The inverse of ``letterbox_geometry`` for these sizes ((width, height) pixels)."""
        w, h, dx, dy = letterbox_geometry(frame_size, model_size, align)
        mw, mh = model_size
        return cls(mw / w, mh / h, -dx / w, -dy / h)

    @property
    def is_identity(self) -> bool:
        return (self.scale_x, self.scale_y, self.offset_x, self.offset_y) == (1.0, 1.0, 0.0, 0.0)

    def apply(self, xyxy: NDArray[np.float32]) -> NDArray[np.float32]:
        """(N, 4) x1, y1, x2, y2 model-normalised -> frame-normalised, clipped to 0..1."""
        if self.is_identity:
            return xyxy
        scale = np.array([self.scale_x, self.scale_y] * 2, np.float32)
        offset = np.array([self.offset_x, self.offset_y] * 2, np.float32)
        out: NDArray[np.float32] = np.clip(xyxy * scale + offset, 0.0, 1.0).astype(np.float32)
        return out


@dataclass(frozen=True, slots=True, eq=False)
class PreparedInput:
    """One frame resized for a model input, ready for ``Preprocessor.load``.

    ``pixels`` is uint8 (model height, model width, 3) in the model's channel order, owned by
    this object; ``box_map`` maps model-normalised boxes back to the frame; ``key`` names the
    input size and options it was made for (a detector with other ones must not load it).
    """

    pixels: NDArray[np.uint8]
    box_map: BoxMap
    key: tuple[object, ...]


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
    ``options`` (default: stretch, RGB, -1..1) say how to resize, order and scale; the range
    applies to float32 inputs only. Each call returns the ``BoxMap`` for the frame's size.
    """

    def __init__(
        self,
        spec: InputSpec,
        target: Callable[[], NDArray[Any]],
        *,
        options: PreprocessOptions | None = None,
        interpolation: int = cv2.INTER_LINEAR,
    ) -> None:
        self.spec = spec
        self.options = options or PreprocessOptions()
        self._size = spec.size
        self._shape = (spec.height, spec.width, 3)
        self._target = target
        self._interpolation = interpolation
        self._scratch = np.empty(self._shape, np.uint8)
        self._rgb = np.empty(self._shape, np.uint8) if spec.dtype != "uint8" else None
        self._colour = cv2.COLOR_BGR2RGB if self.options.channel_order == "rgb" else None
        mean, std = _RANGES[self.options.input_range]
        self._mean = mean
        self._inv_std = 1.0 / std
        self._identity = BoxMap()
        # Letterbox state, settled per frame size: the padded canvas is filled once.
        self._letterbox_for: tuple[int, int] | None = None
        self._letterbox_map = self._identity
        self._inner: NDArray[np.uint8] | None = None
        self._inner_at = (0, 0)
        self.key: tuple[object, ...] = (self._size, self.options, interpolation)
        """What ``prepare`` output depends on; ``load`` refuses input with another key."""

    @classmethod
    def for_interpreter(
        cls,
        interpreter: Interpreter,
        spec: InputSpec,
        options: PreprocessOptions | None = None,
    ) -> Preprocessor:
        """A preprocessor writing into ``interpreter``'s input (borrowed, not owned)."""
        # The runtime refuses to invoke while views of its memory are alive, hence a callable
        # that hands out a fresh view per frame rather than one view kept for good.
        return cls(spec, interpreter.tensor(spec.index), options=options)

    def _letterbox(self, image_bgr: NDArray[np.uint8]) -> NDArray[np.uint8]:
        frame_size = (image_bgr.shape[1], image_bgr.shape[0])
        if frame_size != self._letterbox_for:
            w, h, dx, dy = letterbox_geometry(frame_size, self._size, self.options.align)
            self._scratch.fill(self.options.pad_value)
            self._inner = np.empty((h, w, 3), np.uint8)
            self._inner_at = (dx, dy)
            self._letterbox_map = BoxMap.for_letterbox(frame_size, self._size, self.options.align)
            self._letterbox_for = frame_size
        inner = self._inner
        assert inner is not None
        dx, dy = self._inner_at
        h, w = inner.shape[:2]
        # cv2.resize needs a contiguous destination, hence the copy into the padded canvas.
        cv2.resize(image_bgr, (w, h), dst=inner, interpolation=self._interpolation)
        self._scratch[dy : dy + h, dx : dx + w] = inner
        return self._scratch

    def prepare(self, image_bgr: NDArray[np.uint8]) -> PreparedInput:
        """Resize and channel-order ``image_bgr`` (H x W x 3, uint8, BGR) for ``load``.

        Thread-safe: it reads only settings fixed at construction and writes only new arrays,
        so it may run on another thread than the one that loads and invokes.
        """
        _check_image(image_bgr)
        box_map = self._identity
        resized: NDArray[np.uint8]
        if image_bgr.shape == self._shape:
            resized = image_bgr
        elif self.options.resize == "letterbox":
            frame_size = (image_bgr.shape[1], image_bgr.shape[0])
            w, h, dx, dy = letterbox_geometry(frame_size, self._size, self.options.align)
            resized = np.full(self._shape, self.options.pad_value, np.uint8)
            inner = cv2.resize(image_bgr, (w, h), interpolation=self._interpolation)
            resized[dy : dy + h, dx : dx + w] = inner
            box_map = BoxMap.for_letterbox(frame_size, self._size, self.options.align)
        else:
            resized = np.asarray(
                cv2.resize(image_bgr, self._size, interpolation=self._interpolation), np.uint8
            )
        pixels = np.empty(self._shape, np.uint8)
        if self._colour is None:
            np.copyto(pixels, resized)
        else:
            cv2.cvtColor(resized, self._colour, dst=pixels)
        return PreparedInput(pixels, box_map, self.key)

    def load(self, prepared: PreparedInput) -> BoxMap:
        """Write ``prepared`` (from ``prepare`` of a preprocessor with the same ``key``) into the
        input tensor; returns its ``BoxMap``. Raises ``ValueError`` for another key."""
        if prepared.key != self.key:
            raise ValueError(
                f"prepared input is for {prepared.key}, this model input takes {self.key}: "
                "prepare the frame with this detector"
            )
        target = self._target()[0]
        if self._rgb is None:
            np.copyto(target, prepared.pixels)
        else:
            self._scale_into(prepared.pixels, target)
        return prepared.box_map

    def _scale_into(self, pixels: NDArray[Any], target: NDArray[Any]) -> None:
        """Channel-ordered uint8 ``pixels`` -> an int8 or float32 ``target`` tensor."""
        if self.spec.dtype == "int8":
            # p - 128 for p in 0..255 is p with its top bit flipped, read as int8.
            np.bitwise_xor(pixels, np.uint8(0x80), out=target.view(np.uint8))
        else:
            np.subtract(pixels, self._mean, out=target, dtype=np.float32)
            np.multiply(target, self._inv_std, out=target)

    def __call__(self, image_bgr: NDArray[np.uint8]) -> BoxMap:
        """Resize ``image_bgr`` (H x W x 3, uint8, BGR; any size) into the input tensor.

        Returns the map from model-normalised boxes back to ``image_bgr``-normalised ones.
        """
        _check_image(image_bgr)
        resized: NDArray[Any]
        box_map = self._identity
        if image_bgr.shape == self._shape:
            resized = image_bgr
        elif self.options.resize == "letterbox":
            resized = self._letterbox(image_bgr)
            box_map = self._letterbox_map
        else:
            resized = cv2.resize(
                image_bgr, self._size, dst=self._scratch, interpolation=self._interpolation
            )
        target = self._target()[0]
        if self._rgb is None:  # uint8: the pixels themselves, written in place into the tensor
            if self._colour is None:
                np.copyto(target, resized)
            else:
                cv2.cvtColor(resized, self._colour, dst=target)
            return box_map
        rgb: NDArray[Any]
        if self._colour is None:  # bgr: the values below are computed from it directly
            rgb = resized
        else:
            rgb = cv2.cvtColor(resized, self._colour, dst=self._rgb)
        self._scale_into(rgb, target)
        return box_map


def _check_image(image_bgr: NDArray[Any]) -> None:
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(
            f"expected a BGR uint8 image of shape (height, width, 3), got {image_bgr.dtype} "
            f"{image_bgr.shape}"
        )
