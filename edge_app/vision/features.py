"""Patch features from a TFLite image backbone: one embedding per cell of a grid over the image.

Anomaly detection (``edge_app.vision.anomaly``) compares the local features of a frame with
those of normal frames. An embedding extractor (e.g. MobileNet v1 cut before its classifier)
only outputs one global vector, but its inner feature maps hold one vector per image region.
``FeatureExtractor`` rewrites the model in memory so that one such map (by default the last
one at stride 16: 14 x 14 cells for a 224 x 224 input) is an output too, so one ``invoke``
yields the whole grid; the runtime keeps that tensor intact, which it does not promise for
inner tensors it was not asked for.

Features are float32 arrays of shape (rows, cols, channels), dequantized; cell (r, c) covers
the image region rows r/rows..(r+1)/rows and columns c/cols..(c+1)/cols (normalised).
"""

from __future__ import annotations

__all__ = ["FeatureExtractor", "FeatureLayer"]

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.errors import ModelError, UnsupportedModelError
from edge_app.vision.preprocess import InputSpec, Preprocessor
from edge_app.vision.runtime import load_interpreter
from edge_app.vision.tensors import TensorInfo, dequantize

_STRIDE = 16
"""Feature maps at 1/16 of the input size: local enough to place a defect, deep enough to
describe it (PatchCore's middle layers)."""


@dataclass(frozen=True, slots=True)
class FeatureLayer:
    """The inner tensor used: its index and name in the graph, grid size and channels."""

    index: int
    name: str
    rows: int
    cols: int
    channels: int


def _graph(path: Path) -> Any:
    """The model's flatbuffer as LiteRT's object API (``ModelT``); ModelError if not TFLite."""
    from ai_edge_litert import schema_py_generated as tfl  # noqa: PLC0415  # heavy; on demand

    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{path} is not a TFLite model (no TFL3 identifier)")
    try:
        return tfl.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # the generated parser raises anything on a damaged buffer
        raise ModelError(f"{path} is not a readable TFLite model: {exc}") from exc


def _choose_layer(model: Any, path: Path, layer: str | None) -> FeatureLayer:
    graph = model.subgraphs[0]
    produced = {int(t) for op in graph.operators for t in op.outputs}
    inputs = [graph.tensors[i] for i in graph.inputs]
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise UnsupportedModelError(
            f"{path} does not take one [1, height, width, 3] image; not a feature extractor"
        )
    height, width = int(inputs[0].shape[1]), int(inputs[0].shape[2])
    candidates: list[FeatureLayer] = []
    for index in sorted(produced):
        tensor = graph.tensors[index]
        shape = [int(d) for d in tensor.shape]
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        if len(shape) == 4 and shape[0] == 1 and min(shape[1:3]) >= 2 and shape[3] >= 16:
            candidates.append(FeatureLayer(index, name, shape[1], shape[2], shape[3]))
    if layer is not None:
        for cand in candidates:
            if layer in (cand.name, str(cand.index)):
                return cand
        raise UnsupportedModelError(
            f"{path} has no feature map named or numbered {layer!r}; "
            "leave the layer out to use the default one"
        )
    stride16 = [c for c in candidates if c.rows == height // _STRIDE and c.cols == width // _STRIDE]
    if not stride16:
        raise UnsupportedModelError(
            f"{path} has no [1, {height // _STRIDE}, {width // _STRIDE}, C] feature map (1/16 "
            "of its input); give an image backbone such as a MobileNet embedding extractor"
        )
    return stride16[-1]


def _with_output(model: Any, index: int) -> bytes:
    import flatbuffers  # noqa: PLC0415  # comes with LiteRT

    graph = model.subgraphs[0]
    graph.outputs = [*list(graph.outputs), index]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class FeatureExtractor:
    """A loaded backbone: ``extract(image)`` returns its feature grid. Not thread-safe (one
    interpreter); owns the interpreter, which needs no closing.

    ``layer`` picks the feature map by tensor name or index (default: the last one at 1/16 of
    the input size). Raises ``ModelNotFoundError``/``ModelError`` for a missing or unloadable
    file and ``UnsupportedModelError`` for a model without a usable feature map.
    """

    def __init__(self, path: Path, *, threads: int = 2, layer: str | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            load_interpreter(path, threads)  # raises the loader's own clear error
        model = _graph(path)
        self.layer = _choose_layer(model, path, layer)
        self.path = path
        interpreter, self.runtime_name = load_interpreter(
            path, threads, content=_with_output(model, self.layer.index)
        )
        self._interpreter = interpreter
        spec = InputSpec.from_details(interpreter.get_input_details()[0])
        self.input_size = spec.size
        # Backbones are trained on RGB, stretched; quantized inputs take the pixels as they are.
        self._prepare = Preprocessor.for_interpreter(interpreter, spec)
        details = next(
            d for d in interpreter.get_output_details() if d["index"] == self.layer.index
        )
        self._info = TensorInfo.from_details(details)
        try:
            self.extract(np.zeros((spec.height, spec.width, 3), np.uint8))
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{path} loads but cannot run: {exc}") from exc

    def extract(self, image_bgr: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Feature grid of ``image_bgr`` (any size, BGR uint8): (rows, cols, channels)."""
        self._prepare(image_bgr)
        self._interpreter.invoke()
        grid = dequantize(self._interpreter.get_tensor(self.layer.index), self._info)[0]
        # 3 x 3 neighbourhood average: each cell also sees its surroundings (PatchCore's
        # local aggregation), so a defect on a cell border is not split in two.
        return _blur3(grid)


def _blur3(grid: NDArray[np.float32]) -> NDArray[np.float32]:
    """3 x 3 box mean of a (rows, cols, channels) grid, edges replicated (OpenCV's filters
    stop at 512 channels)."""
    rows, cols = grid.shape[:2]
    padded = np.pad(grid, ((1, 1), (1, 1), (0, 0)), mode="edge")
    out = np.zeros_like(grid)
    for dy in range(3):
        for dx in range(3):
            out += padded[dy : dy + rows, dx : dx + cols]
    out *= np.float32(1.0 / 9.0)
    return out
