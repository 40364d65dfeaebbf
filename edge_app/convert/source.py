"""The user's TensorFlow model (SavedModel folder or Keras file) and the TFLite converter.

This is the only module that imports TensorFlow, and only inside ``load_source``: the daemon
never does (an import-linter contract in pyproject.toml), and without the ``[convert]`` extra
``require_tensorflow`` says what to install. The source model is wrapped in one concrete
function of a fixed [1, height, width, 3] float32 input, which is what the converter takes
for both kinds of source and what the appliance feeds.
"""

from __future__ import annotations

__all__ = ["QUANTIZE_MODES", "SourceModel", "load_source", "require_tensorflow"]

import contextlib
import importlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.errors import ModelError, UnsupportedModelError

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
"""``--quantize``: float32 as trained; float16 weights; dynamic-range int8 weights; full
integer int8 (weights and activations, calibrated on representative frames)."""

_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # TensorFlow's own deprecation warnings are not ours to fix, and the tests turn every
    # warning into an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def require_tensorflow() -> Any:
    """The ``tensorflow`` module; ``ModelError`` saying what to install when it is missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _quiet():
            return importlib.import_module("tensorflow")
    except ImportError as exc:
        raise ModelError(
            "models convert needs TensorFlow, which is not installed: run "
            "pip install 'edge-app[convert]' (it installs tensorflow-cpu, about 600 MB); "
            "the appliance itself never needs it"
        ) from exc


class SourceModel:
    """A loaded source model: ``input_size`` (width, height) pixels, ``run`` on a float32
    [1, H, W, 3] batch, ``convert`` to TFLite bytes. Holds TensorFlow objects and, for a
    Keras source, a temporary SavedModel folder: the caller closes it (or uses ``with``)."""

    def __init__(
        self,
        tf: Any,
        path: Path,
        function: Any,
        keep: Any,
        size: tuple[int, int],
        *,
        temp: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        self._tf = tf
        self.path = path
        self._function = function
        self._keep = keep  # the loaded model must outlive its concrete function
        self._temp = temp
        self.input_size = size

    def close(self) -> None:
        """Remove the temporary SavedModel of a Keras source, if any. Idempotent."""
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def __enter__(self) -> SourceModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, batch: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """The model's outputs for ``batch``, as float32 arrays in the order of their
        (sorted) output names."""
        with _quiet():
            result = self._function(self._tf.constant(batch))
        return [np.asarray(t, np.float32) for t in _flatten(result)]

    def convert(
        self,
        quantize: str,
        representative: Callable[[], Iterable[list[NDArray[np.float32]]]] | None = None,
        io_type: str = "uint8",
    ) -> bytes:
        """TFLite flatbuffer bytes. ``int8`` needs ``representative`` (yielding one-element
        lists of float32 input batches) and takes ``io_type`` uint8 or int8 for the input and
        output tensors. Raises ``ModelError`` with the converter's reason."""
        tf = self._tf
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
        with _quiet():
            converter = tf.lite.TFLiteConverter.from_concrete_functions(
                [self._function], self._keep
            )
            if quantize != "none":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
            elif quantize == "int8":
                if representative is None:
                    raise ValueError("int8 quantization needs representative frames")
                converter.representative_dataset = representative
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                dtype = {"uint8": tf.uint8, "int8": tf.int8}[io_type]
                converter.inference_input_type = dtype
                converter.inference_output_type = dtype
            try:
                return bytes(converter.convert())
            except Exception as exc:  # the converter raises many kinds; all mean "cannot"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
                raise ModelError(
                    f"the TFLite converter cannot convert {self.path} ({quantize}): {first}"
                ) from exc


def _flatten(result: Any) -> list[Any]:
    if isinstance(result, dict):
        return [result[k] for k in sorted(result)]
    if isinstance(result, list | tuple):
        return list(result)
    return [result]


def load_source(path: Path, input_size: tuple[int, int] | None = None) -> SourceModel:
    """Load a SavedModel folder or a Keras file (.keras, .h5) as a ``SourceModel``.

    ``input_size`` (width, height) is needed only when the model's input leaves it open.
    Raises ``ModelError``: not a model, unreadable, no image input, or no size.
    """
    tf = require_tensorflow()
    path = Path(path)
    with _quiet():
        if path.is_dir():
            return _from_saved_model(tf, path, path, input_size, None)
        if path.is_file() and path.suffix.lower() in _KERAS_SUFFIXES:
            try:
                model = tf.keras.models.load_model(str(path), compile=False)
            except (OSError, ValueError, TypeError) as exc:
                raise ModelError(_keras_error(path, exc)) from exc
            if len(model.inputs) != 1:
                raise UnsupportedModelError(
                    f"{path} takes {len(model.inputs)} inputs; edge-app feeds one image "
                    "[1, height, width, 3]"
                )
            _size(path, list(model.inputs[0].shape), input_size)  # an image input, first
            # Keras 3 models convert reliably only through their exported SavedModel (a
            # concrete function of the live model converts with unfrozen variables: NaN).
            folder = tempfile.TemporaryDirectory(prefix="edge-app-convert-")
            try:
                model.export(folder.name, verbose=False)
            except (OSError, ValueError, TypeError) as exc:
                folder.cleanup()
                raise ModelError(f"cannot export the Keras model {path}: {exc}") from exc
            return _from_saved_model(tf, Path(folder.name), path, input_size, folder)
        if path.exists():
            raise ModelError(
                f"{path} is not a model edge-app can convert: give a SavedModel folder or a "
                f"Keras file ({', '.join(_KERAS_SUFFIXES)})"
            )
        raise ModelError(f"source model {path} does not exist")


def _from_saved_model(
    tf: Any,
    folder: Path,
    path: Path,
    input_size: tuple[int, int] | None,
    temp: tempfile.TemporaryDirectory[str] | None,
) -> SourceModel:
    """``folder`` a SavedModel (``path`` what the user gave; ``temp`` a folder to keep)."""
    if not (folder / "saved_model.pb").is_file():
        raise ModelError(
            f"{path} is a folder without saved_model.pb, so not a SavedModel; give a "
            "SavedModel folder (model.export(DIR)) or a Keras file (.keras, .h5)"
        )
    try:
        loaded = tf.saved_model.load(str(folder))
        signature = loaded.signatures["serving_default"]
    except (KeyError, OSError, ValueError, RuntimeError) as exc:
        if temp is not None:
            temp.cleanup()
        raise ModelError(f"cannot load the SavedModel {path}: {exc}") from exc
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"{path} takes {len(inputs)} inputs ({', '.join(sorted(inputs))}); "
            "edge-app feeds one image [1, height, width, 3]"
        )
    ((name, spec),) = inputs.items()
    width, height = _size(path, list(spec.shape), input_size)

    def call(x: Any) -> Any:
        return signature(**{name: x})

    function = tf.function(
        call, input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32)]
    ).get_concrete_function()
    return SourceModel(tf, path, function, loaded, (width, height), temp=temp)


def _keras_error(path: Path, exc: Exception) -> str:
    text = str(exc)
    marker = "Could not locate class "
    if marker in text:
        name = text.split(marker, 1)[1].split(".", 1)[0]
        return (
            f"cannot load the Keras model {path}: it uses the custom class {name}, whose code "
            "is not here; export a SavedModel instead (model.export(DIR)) and convert DIR"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"cannot load the Keras model {path}: {first}"


def _size(path: Path, shape: list[Any], given: tuple[int, int] | None) -> tuple[int, int]:
    if len(shape) != 4 or shape[3] != 3:
        raise UnsupportedModelError(
            f"{path} has input shape {shape}, which is not an image: edge-app feeds one RGB "
            "image as [1, height, width, 3] (NHWC)"
        )
    height, width = shape[1], shape[2]
    if given is not None:
        if (height, width) != (None, None) and (width, height) != given:
            raise UnsupportedModelError(
                f"{path} takes {width}x{height} images; --input-size {given[0]}x{given[1]} "
                "does not fit it (leave it out)"
            )
        return given
    if height is None or width is None:
        raise UnsupportedModelError(
            f"{path} leaves its input size open ({shape}); give it with --input-size WxH"
        )
    return int(width), int(height)
