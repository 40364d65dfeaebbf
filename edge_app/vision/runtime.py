"""Load a TFLite interpreter from whichever runtime is installed: LiteRT first, tflite-runtime next.

LiteRT (``ai-edge-litert``) is the maintained successor of ``tflite-runtime`` and runs quantized
graphs about ten times faster on x86 (XNNPACK); ``tflite-runtime`` remains the fallback for
devices where only it exists.
"""

from __future__ import annotations

__all__ = ["RUNTIMES", "Interpreter", "load_interpreter"]

import importlib
import importlib.metadata
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from numpy.typing import NDArray

from edge_app.errors import ModelError, ModelNotFoundError

log = logging.getLogger("edge_app.vision")

RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)
"""(distribution name, module) of each supported runtime, in order of preference."""


class Interpreter(Protocol):
    """The part of ``tf.lite.Interpreter`` that edge_app uses (both runtimes provide it)."""

    def allocate_tensors(self) -> None: ...

    def invoke(self) -> None: ...

    def get_input_details(self) -> list[dict[str, Any]]: ...

    def get_output_details(self) -> list[dict[str, Any]]: ...

    def set_tensor(self, tensor_index: int, value: NDArray[Any]) -> None: ...

    def get_tensor(self, tensor_index: int) -> NDArray[Any]: ...

    def tensor(self, tensor_index: int) -> Callable[[], NDArray[Any]]: ...


def _import_runtime() -> tuple[type[Any], str]:
    reasons: list[str] = []
    for dist, module_name in RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            reasons.append(f"{dist}: {exc}")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown version"
        return module.Interpreter, f"{dist} {version}"
    raise ModelError(
        "no TFLite runtime is installed ("
        + "; ".join(reasons)
        + "). Install one: pip install ai-edge-litert (or, where it has no wheel, "
        "pip install 'edge-app[tflite-runtime]')"
    )


def load_interpreter(path: Path, threads: int) -> tuple[Interpreter, str]:
    """Load ``path`` with ``threads`` CPU threads and allocate its tensors.

    Returns the interpreter (owned by the caller; it holds no OS resources beyond memory) and
    the runtime's name and version, e.g. ``"ai-edge-litert 2.3.0"``. Raises
    ``ModelNotFoundError`` if the file is missing and ``ModelError`` if no runtime is installed
    or the file is not a loadable TFLite model.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    interpreter_cls, runtime = _import_runtime()
    try:
        interpreter: Interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(
            f"{path} is not a loadable TFLite model ({runtime} says: {exc}); "
            "check that the file is a complete .tflite flatbuffer (re-pull or re-download it)"
        ) from exc
    log.info(
        "loaded %s with %s, %d thread(s)",
        path.name,
        runtime,
        threads,
        extra={"model_path": str(path), "runtime": runtime, "threads": threads},
    )
    return interpreter, runtime
