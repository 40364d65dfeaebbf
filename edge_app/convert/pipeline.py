"""``models convert``: source model -> verified TFLite model with its sidecar and lineage.

1. Load the source (``source.load_source``) and sample the user's footage
   (``frames.sample_frames``): calibration frames and held-out frames between them.
2. Convert once to float32 and load that with the daemon's own detector: it settles the
   output format, so the frames can be preprocessed as the appliance will (the format's
   reference conventions, overridden by the user's).
3. Convert as asked; int8 is calibrated on the calibration frames, each preprocessed by the
   daemon's ``Preprocessor`` into the float input the source takes.
4. Run source and TFLite model on the held-out frames: numeric error per output, and the
   detections of both decoded by the same detector (``TFLiteDetector.decode_outputs``),
   matched by IoU (``agreement``).
5. Only if the agreement reaches ``min_agreement`` (or ``force``), write the model
   atomically with its sidecar. The lineage (source and calibration hashes, options,
   figures) goes back to the caller, which registers the model with it if asked.
"""

from __future__ import annotations

__all__ = ["ConversionReport", "ConvertOptions", "convert_model"]

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.convert.agreement import Agreement, OutputError, match_detections, output_error
from edge_app.convert.frames import CalibrationSet, sample_frames
from edge_app.convert.source import SourceModel, load_source
from edge_app.domain import Detections, Image
from edge_app.errors import ModelError, UnsupportedModelError
from edge_app.files import scratch_file, write_atomic
from edge_app.models import Conventions, sha256_file, source_digest, write_sidecar
from edge_app.vision import InputSpec, Preprocessor, TFLiteDetector, dequantize, load_interpreter
from edge_app.vision.decoders import TensorInfo
from edge_app.vision.preprocess import BoxMap, default_options

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """What ``models convert`` was asked (see its ``--help``). ``input_size`` (width,
    height) only for sources that leave it open; ``conventions`` the user's overrides."""

    source: Path
    out: Path
    calibration: tuple[Path, ...]
    quantize: str = "none"
    frames: int = 100
    held_out: int = 20
    input_size: tuple[int, int] | None = None
    io_type: str = "uint8"
    conventions: Conventions = field(default_factory=Conventions)
    min_agreement: float = 0.9
    score_threshold: float = 0.5
    force: bool = False


@dataclass(frozen=True, slots=True)
class ConversionReport:
    """The outcome: ``written`` is False when the agreement was too low (and not forced)."""

    out: Path
    written: bool
    sha256: str
    bytes: int
    conventions: Conventions
    outputs: tuple[OutputError, ...]
    agreement: Agreement
    invoke_ms: float
    lineage: dict[str, Any]


def convert_model(options: ConvertOptions, progress: Progress) -> ConversionReport:
    """Convert, verify and (if good enough) write ``options.out`` and its sidecar.

    ``progress`` gets one line per step. Raises ``ModelError`` (source, converter) or
    ``SourceError`` (calibration footage) saying what to do; writes nothing then.
    """
    progress(f"loading {options.source}")
    with load_source(options.source, options.input_size) as source:
        return _convert(source, options, progress)


def _convert(source: SourceModel, options: ConvertOptions, progress: Progress) -> ConversionReport:
    frames = sample_frames(options.calibration, options.frames, options.held_out, source.input_size)
    if not frames.held_out:
        raise ModelError(
            f"the calibration set has {len(frames.calibration)} frame(s), too few to hold "
            "some out for checking the conversion: give more footage"
        )
    progress(
        f"{len(frames.calibration)} calibration and {len(frames.held_out)} held-out frames "
        f"from {len(frames.files)} file(s)"
    )
    folder = options.out.parent
    if not folder.is_dir():
        raise ModelError(f"the folder of --out {options.out} does not exist")
    progress("converting to float32 (reference for the format and preprocessing)")
    with scratch_file(folder, suffix=".tflite") as reference:
        reference.write_bytes(source.convert("none"))
        conventions = _settle_format(reference, options)
    width, height = source.input_size
    feed = _SourceFeed(width, height, conventions)
    representative = None
    if options.quantize == "int8":
        representative = _representative(feed, frames.calibration, progress)
    progress(f"converting ({options.quantize})")
    data = source.convert(options.quantize, representative, options.io_type)
    with scratch_file(folder, suffix=".tflite") as candidate:
        candidate.write_bytes(data)
        _check_input_quantization(candidate, feed)
        outputs, agreement, invoke_ms = _compare(
            source, candidate, feed=feed, frames=frames, options=options, conventions=conventions
        )
    broken = [e.name for e in outputs if not np.isfinite(e.max_abs)]
    if broken:  # not even --force writes a model that computes NaN
        raise ModelError(
            f"the converted model's output(s) {', '.join(broken)} are not finite (NaN or "
            f"infinity) where the source's are: the conversion of {options.source} is broken; "
            "export it as a SavedModel and convert that, or try another --quantize"
        )
    accepted = agreement.agreement >= options.min_agreement
    written = accepted or options.force
    digest = hashlib.sha256(data).hexdigest()
    lineage = _lineage(
        options,
        frames,
        conventions=conventions,
        outputs=outputs,
        agreement=agreement,
        digest=digest,
        input_size=source.input_size,
    )
    if written:
        try:
            write_atomic(options.out, data)
        except OSError as exc:
            raise ModelError(f"cannot write {options.out}: {exc.strerror}") from exc
        write_sidecar(options.out, conventions)
    return ConversionReport(
        options.out, written, digest, len(data), conventions, outputs, agreement, invoke_ms,
        lineage,
    )  # fmt: skip


def _settle_format(reference: Path, options: ConvertOptions) -> Conventions:
    conv = options.conventions
    labels = Path(conv.labels) if conv.labels else None
    try:
        with TFLiteDetector(
            reference, labels, threads=1, fmt=conv.format, preprocess=conv.preprocess()
        ) as detector:
            return conv.model_copy(update={"format": detector.format})
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(
            f"{options.source} converts, but its outputs fit no edge-app decoder: {exc}"
        ) from exc


def _check_input_quantization(candidate: Path, feed: _SourceFeed) -> None:
    """The appliance feeds a quantized input the pixels as they are (uint8) or shifted by
    -128 (int8), ignoring its scale: refuse a model whose input quantization would read
    them as other values than the source was trained on."""
    interpreter, _ = load_interpreter(candidate, threads=1)
    spec = InputSpec.from_details(interpreter.get_input_details()[0])
    if spec.dtype == "float32":
        return
    low = {"-1..1": -1.0, "0..1": 0.0, "0..255": 0.0}[feed.options.input_range]
    high = {"-1..1": 1.0, "0..1": 1.0, "0..255": 255.0}[feed.options.input_range]
    scale = (high - low) / 255
    zero = round(-low / scale) + (-128 if spec.dtype == "int8" else 0)
    if abs(spec.scale - scale) > 0.02 * scale or abs(spec.zero_point - zero) > 2:
        raise ModelError(
            f"the int8 model's input reads pixel p as {spec.scale:.6g} x (p - "
            f"{spec.zero_point}), but the source takes {feed.options.input_range} "
            f"(scale {scale:.6g}, zero point {zero}): the calibration frames do not span "
            "dark to bright pixels; add footage with both, or use --quantize dynamic"
        )


class _SourceFeed:
    """Frames -> the float32 [1, H, W, 3] input the source model takes, through the
    daemon's ``Preprocessor`` (same resize, channel order and scaling as the appliance)."""

    def __init__(self, width: int, height: int, conventions: Conventions) -> None:
        assert conventions.format is not None  # settled by _settle_format
        self.buffer = np.zeros((1, height, width, 3), np.float32)
        spec = InputSpec(0, "source", height, width, "float32", 0.0, 0)
        self.options = dataclasses.replace(
            default_options(conventions.format), **conventions.preprocess()
        )
        self._pre = Preprocessor(spec, lambda: self.buffer, options=self.options)

    def __call__(self, image: Image) -> BoxMap:
        """Fill ``buffer`` from ``image``; returns the ``BoxMap``."""
        return self._pre(image)


def _representative(
    feed: _SourceFeed, images: tuple[Image, ...], progress: Progress
) -> Callable[[], Iterator[list[NDArray[np.float32]]]]:
    def dataset() -> Iterator[list[NDArray[np.float32]]]:
        for n, image in enumerate(images, 1):
            if n == 1 or n % 10 == 0 or n == len(images):
                progress(f"calibrating: frame {n}/{len(images)}")
            feed(image)
            yield [feed.buffer.copy()]

    return dataset


def _order(source_shapes: list[tuple[int, ...]], tflite: tuple[TensorInfo, ...]) -> list[int]:
    """For each TFLite output, the index of the source output of the same shape (in order
    among equal shapes)."""
    free = list(range(len(source_shapes)))
    order: list[int] = []
    for tensor in tflite:
        match = next((i for i in free if source_shapes[i] == tuple(tensor.shape)), None)
        if match is None:
            raise ModelError(
                f"the converted output {tensor.name} {list(tensor.shape)} has no source "
                f"output of that shape ({source_shapes}); the conversion changed the outputs"
            )
        free.remove(match)
        order.append(match)
    return order


def _compare(
    source: SourceModel,
    candidate: Path,
    *,
    feed: _SourceFeed,
    frames: CalibrationSet,
    options: ConvertOptions,
    conventions: Conventions,
) -> tuple[tuple[OutputError, ...], Agreement, float]:
    interpreter, _ = load_interpreter(candidate, threads=1)
    spec = InputSpec.from_details(interpreter.get_input_details()[0])
    converted_pre = Preprocessor.for_interpreter(interpreter, spec, feed.options)
    outputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_output_details())
    with TFLiteDetector(
        candidate,
        threads=1,
        score_threshold=options.score_threshold,
        fmt=conventions.format,
        preprocess=conventions.preprocess(),
    ) as detector:
        src_by_output: list[list[NDArray[np.float32]]] = [[] for _ in outputs]
        tfl_by_output: list[list[NDArray[np.float32]]] = [[] for _ in outputs]
        pairs: list[tuple[Detections, Detections]] = []
        order: list[int] | None = None
        timings: list[float] = []
        for image in frames.held_out:
            box_map = feed(image)
            src = source.run(feed.buffer)
            if order is None:
                order = _order([tuple(a.shape) for a in src], outputs)
            src_sorted = [src[i] for i in order]
            converted_pre(image)
            start = time.perf_counter()
            interpreter.invoke()
            timings.append(time.perf_counter() - start)
            tfl = [
                dequantize(interpreter.get_tensor(t.index), t)
                if t.dtype != "float32"
                else interpreter.get_tensor(t.index).astype(np.float32)
                for t in outputs
            ]
            for k in range(len(outputs)):
                src_by_output[k].append(src_sorted[k])
                tfl_by_output[k].append(tfl[k])
            pairs.append(
                (
                    detector.decode_outputs(src_sorted, box_map),
                    detector.decode_outputs(tfl, box_map),
                )
            )
    errors = tuple(
        output_error(t.name, src_by_output[k], tfl_by_output[k]) for k, t in enumerate(outputs)
    )
    return errors, match_detections(pairs), 1000 * float(np.median(timings))


def _lineage(
    options: ConvertOptions,
    frames: CalibrationSet,
    *,
    conventions: Conventions,
    outputs: tuple[OutputError, ...],
    agreement: Agreement,
    digest: str,
    input_size: tuple[int, int],
) -> dict[str, Any]:
    try:
        tf_version = metadata.version("tensorflow-cpu")
    except metadata.PackageNotFoundError:
        tf_version = metadata.version("tensorflow")
    return {
        "source": {"path": str(options.source.resolve()), "sha256": source_digest(options.source)},
        "conversion": {
            "quantize": options.quantize,
            "io_type": options.io_type if options.quantize == "int8" else "float32",
            "input_size": list(input_size),
            "tensorflow": tf_version,
            "edge_app": metadata.version("edge-app"),
            "conventions": conventions.model_dump(exclude_none=True),
            "sha256": digest,
        },
        "calibration": {
            "files": [{"path": str(f.resolve()), "sha256": sha256_file(f)} for f in frames.files],
            "frames": len(frames.calibration),
            "held_out": len(frames.held_out),
        },
        "agreement": agreement.to_json()
        | {"min_agreement": options.min_agreement, "forced": options.force},
        "outputs": [
            {"name": e.name, "max_abs": e.max_abs, "mean_abs": e.mean_abs, "relative": e.relative}
            for e in outputs
        ],
    }
