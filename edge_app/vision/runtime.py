"""Load a TFLite interpreter from whichever runtime is installed: LiteRT first, tflite-runtime next.

LiteRT (``ai-edge-litert``) is the maintained successor of ``tflite-runtime`` and runs quantized
graphs about ten times faster on x86 (XNNPACK); ``tflite-runtime`` remains the fallback for
devices where only it exists.

An accelerator is used through a TFLite delegate (``delegate: edgetpu`` in the detector config:
Coral's ``libedgetpu.so.1``, loaded with the runtime's ``load_delegate``). The library is
opened with the dynamic loader first, so a missing runtime gives one clear error (and LiteRT's
``Delegate`` object, which cannot clean up after a failed load, is never built).
"""

from __future__ import annotations

__all__ = ["DELEGATE_LIBRARIES", "RUNTIMES", "Interpreter", "load_interpreter", "runtime_error"]

import ctypes
import importlib
import importlib.metadata
import logging
import re
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

DELEGATE_LIBRARIES: dict[str, str] = {"edgetpu": "libedgetpu.so.1"}
"""Delegate name (``detector.delegate``) -> the shared library that provides it."""

_EDGETPU_HELP = (
    "install the Edge TPU runtime (package libedgetpu1-std from Coral's apt repository, "
    "https://coral.ai/docs/accelerator/get-started/#runtime-on-linux) and plug in the "
    "accelerator, or set delegate: none to run on the CPU"
)


class Interpreter(Protocol):
    """The part of ``tf.lite.Interpreter`` that edge_app uses (both runtimes provide it)."""

    def allocate_tensors(self) -> None: ...

    def invoke(self) -> None: ...

    def get_input_details(self) -> list[dict[str, Any]]: ...

    def get_output_details(self) -> list[dict[str, Any]]: ...

    def set_tensor(self, tensor_index: int, value: NDArray[Any]) -> None: ...

    def get_tensor(self, tensor_index: int) -> NDArray[Any]: ...

    def tensor(self, tensor_index: int) -> Callable[[], NDArray[Any]]: ...


def _import_runtime() -> tuple[Any, str]:
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
        return module, f"{dist} {version}"
    raise ModelError(
        "no TFLite runtime is installed ("
        + "; ".join(reasons)
        + "). Install one: pip install ai-edge-litert (or, where it has no wheel, "
        "pip install 'edge-app[tflite-runtime]')"
    )


def _load_delegate(runtime_module: Any, name: str) -> Any:
    """The delegate object for ``name``; ``ModelError`` saying what to install if it fails."""
    library = DELEGATE_LIBRARIES.get(name)
    if library is None:
        raise ModelError(f"unknown delegate {name!r}; known: none, {', '.join(DELEGATE_LIBRARIES)}")
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        raise ModelError(
            f"delegate: {name} needs {library}, which cannot be loaded ({exc}); {_EDGETPU_HELP}"
        ) from exc
    try:
        return runtime_module.load_delegate(library)
    except (OSError, ValueError, RuntimeError) as exc:
        # the library is there but found no device (unplugged, no permission on /dev/apex_0)
        raise ModelError(
            f"delegate: {name}: {library} loaded but the delegate failed ({exc}); {_EDGETPU_HELP}"
        ) from exc


_CUSTOM_OP = re.compile(r"unresolved custom op: (\S+?)\.?(?:\s|$)")


def runtime_error(path: Path, runtime: str, exc: Exception, what: str, hint: str) -> ModelError:
    """The ``ModelError`` for ``exc``, raised by ``runtime`` while loading or invoking the
    model at ``path``: one line; for an op the runtime lacks, the op's name and what to do,
    otherwise ``what`` failed (e.g. "is not a loadable TFLite model") and ``hint``."""
    said = " ".join(str(exc).split())  # the runtimes' messages span lines
    op = _CUSTOM_OP.search(said)
    if op is None:
        return ModelError(f"{path} {what} ({runtime} says: {said}); {hint}")
    name = op.group(1)
    if name == "edgetpu-custom-op":
        hint = "it was compiled for the Edge TPU: set delegate: edgetpu, or use the CPU build"
    else:
        hint = (
            "re-export the model with TensorFlow Lite builtin ops only, or use a runtime "
            f"that registers {name!r}"
        )
    return ModelError(
        f"{path} needs the custom op {name!r}, which {runtime} does not provide, so the model "
        f"cannot run; {hint}"
    )


def load_interpreter(
    path: Path, threads: int, delegate: str | None = None, *, content: bytes | None = None
) -> tuple[Interpreter, str]:
    """Load ``path`` with ``threads`` CPU threads and allocate its tensors.

    ``content``, when given, is the model to load instead of the file's bytes (a graph
    rewritten in memory, e.g. one exposing an inner tensor as an output); ``path`` still names
    it in messages and must exist.

    ``delegate`` (``"edgetpu"``; None or ``"none"``: CPU only) hands the graph to an
    accelerator. Returns the interpreter (owned by the caller; with a delegate it also holds
    the accelerator) and the runtime's name and version, e.g. ``"ai-edge-litert 2.3.0"``
    (``" + edgetpu"`` appended with the delegate). Raises ``ModelNotFoundError`` if the file
    is missing and ``ModelError`` if no runtime is installed, the delegate cannot be loaded
    (saying what to install) or the file is not a loadable TFLite model (naming a custom op
    the runtime lacks; see ``runtime_error``).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a directory; give the path of a .tflite file")
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    module, runtime = _import_runtime()
    delegates = []
    if delegate not in (None, "none"):
        delegates.append(_load_delegate(module, delegate))
        runtime = f"{runtime} + {delegate}"
    try:
        source = {"model_content": content} if content is not None else {"model_path": str(path)}
        interpreter: Interpreter = module.Interpreter(
            **source, num_threads=threads, experimental_delegates=delegates or None
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise runtime_error(
            path,
            runtime,
            exc,
            "is not a loadable TFLite model",
            "check that the file is a complete .tflite flatbuffer (re-pull or re-download it)",
        ) from exc
    log.info(
        "loaded %s with %s, %d thread(s)",
        path.name,
        runtime,
        threads,
        extra={"model_path": str(path), "runtime": runtime, "threads": threads},
    )
    return interpreter, runtime
