"""Build tiny real .tflite files for tests, with LiteRT's own flatbuffer schema (no TensorFlow).

No YOLO weights can be fetched offline and TensorFlow is too large to install for a converter,
so these graphs stand in: they take a real [1, H, W, 3] image input and produce a fixed
YOLO-layout output tensor (a constant plus 0 x mean(input), so the output depends on the
input in the graph and the runtime must really run it), optionally quantized to int8/uint8 or
cast to float16 by a real QUANTIZE / CAST op. The runtime loads and invokes them like any
exported model, so tensor types, quantization parameters and shapes are the runtime's own.
"""

from __future__ import annotations

__all__ = ["build_constant_model", "build_watching_model"]

from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl
from numpy.typing import NDArray

_TYPES = {
    "float32": tfl.TensorType.FLOAT32,
    "float16": tfl.TensorType.FLOAT16,
    "int8": tfl.TensorType.INT8,
    "uint8": tfl.TensorType.UINT8,
    "int32": tfl.TensorType.INT32,
}


def _tensor(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    buffer: int,
    scale: float | None = None,
    zero_point: int = 0,
) -> Any:
    tensor = tfl.TensorT()
    tensor.name = name
    tensor.shape = list(shape)
    tensor.type = _TYPES[dtype]
    tensor.buffer = buffer
    if scale is not None:
        quant = tfl.QuantizationParametersT()
        quant.scale = [scale]
        quant.zeroPoint = [zero_point]
        tensor.quantization = quant
    return tensor


def _buffer(data: NDArray[Any] | None = None) -> Any:
    buffer = tfl.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    return buffer


def _code(op: int) -> Any:
    code = tfl.OperatorCodeT()
    code.builtinCode = op
    code.deprecatedBuiltinCode = min(op, 127)
    code.version = 1
    return code


def _op(
    code: int, inputs: list[int], outputs: list[int], options: Any = None, kind: int = 0
) -> Any:
    op = tfl.OperatorT()
    op.opcodeIndex = code
    op.inputs = inputs
    op.outputs = outputs
    if options is not None:
        op.builtinOptionsType = kind
        op.builtinOptions = options
    return op


def build_constant_model(
    path: Path,
    output: NDArray[np.float32],
    *,
    input_size: tuple[int, int] = (32, 32),
    output_dtype: str = "float32",
    scale: float | None = None,
    zero_point: int = 0,
) -> Path:
    """Write a model with a float32 [1, height, width, 3] input whose single output is
    ``output`` (float32 values, e.g. [1, N, 5 + C]) as ``output_dtype``: float32, float16
    (CAST), or int8/uint8 (QUANTIZE with ``scale`` / ``zero_point``). Returns ``path``."""
    width, height = input_size
    out_shape = tuple(output.shape)
    buffers = [_buffer()]  # buffer 0: empty, by convention

    def const(data: NDArray[Any]) -> int:
        buffers.append(_buffer(data))
        return len(buffers) - 1

    tensors = [
        _tensor("images", (1, height, width, 3), "float32", 0),
        _tensor("axes", (3,), "int32", const(np.array([1, 2, 3], np.int32))),
        _tensor("mean", (1,), "float32", 0),
        _tensor("zero", (1,), "float32", const(np.zeros(1, np.float32))),
        _tensor("nothing", (1,), "float32", 0),
        _tensor("table", out_shape, "float32", const(output.astype(np.float32))),
        _tensor("output0_float", out_shape, "float32", 0),
    ]
    codes = [_code(tfl.BuiltinOperator.MEAN), _code(tfl.BuiltinOperator.MUL)]
    codes.append(_code(tfl.BuiltinOperator.ADD))
    reducer = tfl.ReducerOptionsT()
    reducer.keepDims = False
    ops = [
        _op(0, [0, 1], [2], reducer, tfl.BuiltinOptions.ReducerOptions),
        _op(1, [2, 3], [4], tfl.MulOptionsT(), tfl.BuiltinOptions.MulOptions),
        _op(2, [5, 4], [6], tfl.AddOptionsT(), tfl.BuiltinOptions.AddOptions),
    ]
    result = 6
    if output_dtype != "float32":
        if output_dtype == "float16":
            codes.append(_code(tfl.BuiltinOperator.CAST))
            tensors.append(_tensor("output0", out_shape, "float16", 0))
        else:
            if scale is None:
                raise ValueError(f"{output_dtype} output needs a quantization scale")
            codes.append(_code(tfl.BuiltinOperator.QUANTIZE))
            tensors.append(_tensor("output0", out_shape, output_dtype, 0, scale, zero_point))
        result = len(tensors) - 1
        ops.append(_op(len(codes) - 1, [6], [result]))
    else:
        tensors[6].name = "output0"
    graph = tfl.SubGraphT()
    graph.tensors = tensors
    graph.inputs = [0]
    graph.outputs = [result]
    graph.operators = ops
    graph.name = "main"
    model = tfl.ModelT()
    model.version = 3
    model.operatorCodes = codes
    model.subgraphs = [graph]
    model.buffers = buffers
    model.description = "edge_app test model"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def build_watching_model(
    path: Path,
    table: NDArray[np.float32],
    score_at: tuple[int, ...],
    *,
    watch: tuple[int, int, int, int],
    channel: int,
    level: float,
    gain: float,
    input_size: tuple[int, int] = (32, 32),
) -> Path:
    """A model that detects only when fed as its conventions say: its single output is
    ``table`` (float32, e.g. [1, N, 5 + C]) with the value at index ``score_at`` replaced by
    ``sigmoid(gain * (m - level))``, where ``m`` is the mean input value of ``channel`` over
    the input pixels ``watch`` = (x1, y1, x2, y2, exclusive ends). So the score is high only
    when the watched patch of the input holds the expected channel at the expected scale
    (a blue patch read as BGR 0..255 at the top-left, say). Returns ``path``."""
    width, height = input_size
    x1, y1, x2, y2 = watch
    mask = np.zeros((1, height, width, 3), np.float32)
    mask[0, y1:y2, x1:x2, channel] = 1.0 / ((x2 - x1) * (y2 - y1))
    onehot = np.zeros(table.shape, np.float32)
    onehot[score_at] = 1.0
    base = table.astype(np.float32).copy()
    base[score_at] = 0.0
    shape = tuple(table.shape)
    buffers = [_buffer()]

    def const(data: NDArray[Any]) -> int:
        buffers.append(_buffer(data))
        return len(buffers) - 1

    tensors = [
        _tensor("images", (1, height, width, 3), "float32", 0),  # 0
        _tensor("mask", mask.shape, "float32", const(mask)),  # 1
        _tensor("masked", mask.shape, "float32", 0),  # 2
        _tensor("axes", (3,), "int32", const(np.array([1, 2, 3], np.int32))),  # 3
        _tensor("mean", (1,), "float32", 0),  # 4
        _tensor("level", (1,), "float32", const(np.array([level], np.float32))),  # 5
        _tensor("centred", (1,), "float32", 0),  # 6
        _tensor("gain", (1,), "float32", const(np.array([gain], np.float32))),  # 7
        _tensor("logit", (1,), "float32", 0),  # 8
        _tensor("score", (1,), "float32", 0),  # 9
        _tensor("onehot", shape, "float32", const(onehot)),  # 10
        _tensor("placed", shape, "float32", 0),  # 11
        _tensor("table", shape, "float32", const(base)),  # 12
        _tensor("output0", shape, "float32", 0),  # 13
    ]
    codes = [
        _code(tfl.BuiltinOperator.MUL),
        _code(tfl.BuiltinOperator.SUM),
        _code(tfl.BuiltinOperator.SUB),
        _code(tfl.BuiltinOperator.LOGISTIC),
        _code(tfl.BuiltinOperator.ADD),
    ]
    reducer = tfl.ReducerOptionsT()
    reducer.keepDims = False
    mul, add = tfl.BuiltinOptions.MulOptions, tfl.BuiltinOptions.AddOptions
    ops = [
        _op(0, [0, 1], [2], tfl.MulOptionsT(), mul),
        _op(1, [2, 3], [4], reducer, tfl.BuiltinOptions.ReducerOptions),
        _op(2, [4, 5], [6], tfl.SubOptionsT(), tfl.BuiltinOptions.SubOptions),
        _op(0, [6, 7], [8], tfl.MulOptionsT(), mul),
        _op(3, [8], [9]),
        _op(0, [10, 9], [11], tfl.MulOptionsT(), mul),
        _op(4, [12, 11], [13], tfl.AddOptionsT(), add),
    ]
    graph = tfl.SubGraphT()
    graph.tensors = tensors
    graph.inputs = [0]
    graph.outputs = [13]
    graph.operators = ops
    graph.name = "main"
    model = tfl.ModelT()
    model.version = 3
    model.operatorCodes = codes
    model.subgraphs = [graph]
    model.buffers = buffers
    model.description = "edge_app convention test model"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path
