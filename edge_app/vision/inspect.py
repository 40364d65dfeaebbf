"""Describe a model file: runtime, tensors, detected output format, digest and size."""

from __future__ import annotations

__all__ = ["inspect_model"]

from pathlib import Path
from typing import Any

from edge_app.errors import UnsupportedModelError
from edge_app.models import Catalog, load_manifest, sha256_file
from edge_app.vision.decoders import TensorInfo, detect_format
from edge_app.vision.labels import choose_labels
from edge_app.vision.preprocess import default_options
from edge_app.vision.runtime import load_interpreter


def _tensor_doc(tensor: TensorInfo) -> dict[str, Any]:
    return {
        "name": tensor.name,
        "index": tensor.index,
        "shape": list(tensor.shape),
        "dtype": tensor.dtype,
        "quantization": {"scale": tensor.scale, "zero_point": tensor.zero_point},
    }


def inspect_model(path: Path, catalog: Catalog | None = None) -> dict[str, Any]:
    """A JSON-ready description of the model at ``path``.

    Keys: ``path``, ``bytes``, ``sha256``, ``manifest_name`` (the catalog entry with this
    digest, or None), ``runtime``, ``inputs`` / ``outputs`` (name, index, shape, dtype,
    quantization), ``format`` (decoder name, or None), ``format_error`` (why no decoder
    matches, or None) and ``preprocessing`` (the format's default resize, pad_value, align,
    channel_order, input_range, plus the first input's width, height, dtype and
    ``quantized_input``; None without a format) and ``labels``: ``{"source", "count"}``, where
    the labels ``open_detector`` would use with no label file configured come from
    (``model metadata (<member>)``, ``manifest <path>`` or ``none``) and how many ids they
    name. Raises ``ModelError`` if the file is missing
    or not a TFLite model.
    """
    path = Path(path)
    interpreter, runtime = load_interpreter(path, threads=1)
    inputs = [TensorInfo.from_details(d) for d in interpreter.get_input_details()]
    outputs = [TensorInfo.from_details(d) for d in interpreter.get_output_details()]
    fmt: str | None
    try:
        fmt, error = detect_format(outputs, inputs, model=str(path)), None
    except UnsupportedModelError as exc:
        fmt, error = None, str(exc)
    preprocessing: dict[str, Any] | None = None
    if fmt is not None and inputs:
        first = inputs[0]
        preprocessing = default_options(fmt).as_dict() | {
            "height": first.shape[1] if len(first.shape) == 4 else None,
            "width": first.shape[2] if len(first.shape) == 4 else None,
            "dtype": first.dtype,
            "quantized_input": first.dtype in {"uint8", "int8"},
        }
    digest = sha256_file(path)
    catalog = catalog or load_manifest()
    spec = catalog.find_sha256(digest)
    labels, source = choose_labels(path, None, catalog.labels_path(spec) if spec else None)
    return {
        "path": str(path.resolve()),
        "bytes": path.stat().st_size,
        "sha256": digest,
        "manifest_name": spec.name if spec is not None else None,
        "runtime": runtime,
        "inputs": [_tensor_doc(t) for t in inputs],
        "outputs": [_tensor_doc(t) for t in outputs],
        "format": fmt,
        "format_error": error,
        "preprocessing": preprocessing,
        "labels": {"source": source, "count": len(labels)},
    }
