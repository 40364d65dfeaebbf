"""The ``Detector`` seam and its TFLite implementation.

``TFLiteDetector`` loads a model with LiteRT (or tflite-runtime), finds its output format from
the tensor shapes, and turns BGR frames into ``Detections`` with boxes normalised 0..1 of the
original frame. ``open_detector`` builds one from the ``detector`` section of the config, using
the model catalog to find the file and its labels.
"""

from __future__ import annotations

__all__ = [
    "Detector",
    "Preparer",
    "TFLiteDetector",
    "open_detector",
    "preprocess_overrides",
]

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge_app.config import DetectorConfig
from edge_app.domain import Detections, ModelRef
from edge_app.errors import ModelError, ModelNotFoundError, UnsupportedModelError
from edge_app.models import Catalog, Conventions, resolve_model, sha256_file
from edge_app.vision.decoders import (
    DECODERS,
    TensorInfo,
    dequantize,
    describe_tensors,
    detect_format,
    get_decoder,
)
from edge_app.vision.labels import LabelMap, choose_labels
from edge_app.vision.nms import nms_per_class
from edge_app.vision.preprocess import (
    BoxMap,
    InputSpec,
    PreparedInput,
    Preprocessor,
    default_options,
)
from edge_app.vision.runtime import Interpreter, load_interpreter, runtime_error
from edge_app.vision.silence import SilenceWatch

log = logging.getLogger("edge_app.vision")


class Preparer(Protocol):
    """A detector's resize, split off so that it can run ahead of the inference on another
    thread (a video source's reader, ``edge_app.sources.PreparesFrames``).

    ``prepare`` is thread-safe; ``detect_prepared(image, prepared)`` gives what
    ``detect(image)`` gives, skipping the resize when ``prepared`` fits the model's input (it
    is redone from ``image`` otherwise, e.g. input prepared for the model before a swap).
    """

    def prepare(self, image_bgr: NDArray[np.uint8]) -> PreparedInput: ...

    def detect_prepared(
        self, image_bgr: NDArray[np.uint8], prepared: PreparedInput
    ) -> Detections: ...


class Detector(Protocol):
    """Turns one BGR frame into ``Detections``. One caller thread at a time; the owner closes it.

    Everything the camera loops, the remote-config applier and the logs ask of a detector:
    lineage (``model``), ``labels``, the ``runtime_name`` that runs it, its ``input_size``
    ((width, height) pixels; motion crop windows take its aspect ratio), the CPU ``threads``
    ``detect`` keeps busy, and the ``score_threshold`` (set by remote config between frames,
    under the cameras' detector lock, with ``set_score_threshold``).
    """

    @property
    def model(self) -> ModelRef: ...

    @property
    def labels(self) -> LabelMap: ...

    @property
    def runtime_name(self) -> str:
        """What runs the model, e.g. ``"ai-edge-litert 2.3.0"`` (for logs and ``/status``)."""
        ...

    @property
    def input_size(self) -> tuple[int, int]: ...

    @property
    def threads(self) -> int: ...

    @property
    def score_threshold(self) -> float: ...

    def set_score_threshold(self, value: float) -> None:
        """Keep scores >= ``value`` (0..1, else ``ValueError``) from the next ``detect`` on."""
        ...

    def preparer(self) -> Preparer | None:
        """This detector's resize-ahead capability, or None if it cannot split its resize."""
        ...

    def detect(self, image_bgr: NDArray[np.uint8]) -> Detections: ...

    def close(self) -> None: ...


class TFLiteDetector:
    """A TFLite object detector. Not thread-safe: give each worker thread its own.

    ``path`` is a .tflite file; ``labels_path`` a label file (None: the labels embedded in the
    model's metadata, else ``default_labels``, else ids are named ``class_<id>``; see
    ``labels_source``); ``threads`` interpreter CPU threads; ``score_threshold`` 0..1, lower scores
    are dropped; ``model_name`` defaults to the file's stem; ``sha256`` (hex) skips re-hashing a
    file the caller has already verified; ``fmt`` forces an output format (None: detected from
    the output tensors); ``preprocess`` overrides fields of the format's ``default_options``
    (resize, pad_value, align, channel_order, input_range); ``iou_threshold`` 0..1 is the NMS
    overlap for formats that need NMS; ``max_detections`` caps boxes per frame; ``delegate``
    (``"edgetpu"``; None: CPU) runs the graph on an accelerator (``load_interpreter``);
    ``model_version`` is the registry version events name (``ModelRef.version``). The
    caller owns the detector and calls ``close()`` (or uses it as a context manager).
    """

    def __init__(
        self,
        path: Path,
        labels_path: Path | None = None,
        threads: int = 2,
        score_threshold: float = 0.5,
        model_name: str | None = None,
        *,
        sha256: str | None = None,
        fmt: str | None = None,
        preprocess: Mapping[str, Any] | None = None,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
        default_labels: Path | None = None,
        delegate: str | None = None,
        model_version: str | None = None,
    ) -> None:
        self.set_score_threshold(score_threshold)
        self._threads = threads
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in 0..1, got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"model file {self.path} does not exist")
        self.sha256 = sha256 or sha256_file(self.path)
        self._model = ModelRef(model_name or self.path.stem, self.sha256[:12], model_version)
        self._labels, self.labels_source = choose_labels(self.path, labels_path, default_labels)
        interpreter, self._runtime_name = load_interpreter(self.path, threads, delegate)
        if self.labels_source == "none":
            log.warning(
                "no label file for %s and none embedded in it: classes are reported as "
                "class_<id>; pass a label file",
                self.path.name,
            )
        inputs = [TensorInfo.from_details(d) for d in interpreter.get_input_details()]
        outputs = [TensorInfo.from_details(d) for d in interpreter.get_output_details()]
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        where = f"model {self.path}"
        self.format = fmt or detect_format(outputs, inputs, model=where)
        if len(inputs) != 1:
            raise UnsupportedModelError(
                f"{where} has {len(inputs)} inputs; edge-app feeds one image:\n"
                + describe_tensors(outputs, inputs)
            )
        self._input = InputSpec.from_details(interpreter.get_input_details()[0])
        self._decoder = get_decoder(self.format)
        try:
            self.options = dataclasses.replace(default_options(self.format), **(preprocess or {}))
        except (TypeError, ValueError) as exc:
            raise UnsupportedModelError(f"bad preprocessing for {where}: {exc}") from exc
        preprocessor = Preprocessor.for_interpreter(interpreter, self._input, self.options)
        self._state: tuple[Interpreter, Preprocessor] | None = (interpreter, preprocessor)
        self._outputs = self.outputs
        self._warned_implausible = False
        self._silence = SilenceWatch(self._model.name, str(self.path), self.format)
        self._output_indices = tuple(t.index for t in outputs)
        # One invoke on a blank frame: warms the runtime's caches and gives the decoder real
        # output values for layouts that shapes alone cannot settle.
        preprocessor(np.zeros((self._input.height, self._input.width, 3), np.uint8))
        sample = self._invoke(interpreter)
        # A forced format that does not fit the tensors is refused here, naming them.
        self._binding = self._decoder.bind(outputs, sample, self._input.size)
        log.info(
            "detector ready: %s (%s, sha256 %s), %s input %dx%d, format %s, %s",
            self._model.name,
            self.path.name,
            self._model.sha256,
            self._input.dtype,
            self._input.width,
            self._input.height,
            self.format,
            self.runtime_name,
            extra={"model": self._model.name, "runtime": self.runtime_name},
        )

    @property
    def score_threshold(self) -> float:
        """Lowest score kept, 0..1; read once per ``detect``."""
        return self._threshold

    def set_score_threshold(self, value: float) -> None:
        """Keep scores >= ``value`` (0..1) from the next ``detect`` on (remote config)."""
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"score_threshold must lie in 0..1, got {value}")
        self._threshold = float(value)

    @property
    def runtime_name(self) -> str:
        """The runtime and its version, e.g. ``"ai-edge-litert 2.3.0"`` (``" + edgetpu"``
        appended with the delegate)."""
        return self._runtime_name

    @property
    def model(self) -> ModelRef:
        """Name and first 12 hex digits of the sha256: the lineage of every detection."""
        return self._model

    @property
    def labels(self) -> LabelMap:
        return self._labels

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input, pixels."""
        return self._input.size

    @property
    def threads(self) -> int:
        """CPU threads the interpreter runs on (``threads`` at construction)."""
        return self._threads

    def detect(self, image_bgr: NDArray[np.uint8]) -> Detections:
        """Detect objects in a BGR uint8 frame (any size; not modified, not kept).

        Boxes are x1, y1, x2, y2 normalised 0..1 of ``image_bgr``; scores >= the threshold.
        """
        return self._detect(image_bgr, None)

    def preparer(self) -> TFLiteDetector:
        """This detector itself: ``prepare`` touches no interpreter state."""
        return self

    def prepare(self, image_bgr: NDArray[np.uint8]) -> PreparedInput:
        """``image_bgr`` resized for this model, for ``detect_prepared``. Thread-safe (it
        touches no interpreter state), so a video source's reader thread can run it."""
        state = self._state  # one read: close() may run on another thread
        if state is None:
            raise ModelError(f"detector for {self.path} is closed")
        return state[1].prepare(image_bgr)  # uses only the preprocessor's fixed settings

    def detect_prepared(self, image_bgr: NDArray[np.uint8], prepared: PreparedInput) -> Detections:
        """``detect(image_bgr)`` with the resize already done by ``prepare``. Input prepared
        for another model input size or options (a model swap) is redone from ``image_bgr``."""
        return self._detect(image_bgr, prepared)

    def _detect(self, image_bgr: NDArray[np.uint8], prepared: PreparedInput | None) -> Detections:
        state = self._state
        if state is None:
            raise ModelError(f"detector for {self.path} is closed")
        interpreter, preprocess = state
        if prepared is not None and prepared.key == preprocess.key:
            box_map = preprocess.load(prepared)
        else:
            box_map = preprocess(image_bgr)
        return self.decode_outputs(self._invoke(interpreter), box_map)

    def decode_outputs(self, arrays: list[NDArray[Any]], box_map: BoxMap) -> Detections:
        """Outputs (float, in ``outputs`` order) -> ``Detections``: decode, NMS where the
        format needs it, boxes mapped back to the frame by ``box_map``. What ``detect`` does
        after invoking; ``models convert`` also decodes the source model's outputs with it,
        so both are read the same way."""
        watched = self._silence.decode_threshold(self._threshold)
        decoded = self._decoder.decode(arrays, watched, self._binding)
        if decoded.rejected and not self._warned_implausible:
            self._warned_implausible = True
            log.warning(
                "model %s gave %d implausible candidate(s) in one frame (score outside 0..1 "
                "or not finite, coordinates not finite, or an empty box); they are dropped. "
                "If this repeats, its outputs are not what format %s expects (logits instead "
                "of probabilities?): check `edge-app models inspect %s` and detector.format. "
                "Logged once per model load.",
                self._model.name,
                decoded.rejected,
                self.format,
                self.path,
            )
        xyxy, scores, class_ids = decoded.xyxy, decoded.scores, decoded.class_ids
        strong = self._silence.observe(scores, self._threshold)  # None once settled
        if strong is not None and watched < self._threshold:
            xyxy, scores, class_ids = xyxy[strong], scores[strong], class_ids[strong]
        if self._decoder.needs_nms and len(scores) > 1:
            keep = nms_per_class(xyxy, scores, class_ids, self.iou_threshold, self.max_detections)
            xyxy, scores, class_ids = xyxy[keep], scores[keep], class_ids[keep]
        xyxy = box_map.apply(xyxy)
        return Detections(xyxy, scores, class_ids, self._labels.lookup(class_ids))

    def _invoke(self, interpreter: Interpreter) -> list[NDArray[Any]]:
        try:
            interpreter.invoke()
        except RuntimeError as exc:
            raise runtime_error(
                self.path,
                self.runtime_name,
                exc,
                "failed during inference",
                f"check it with `edge-app models inspect {self.path}`",
            ) from exc
        # Plain float32 outputs pass as they are (the SSD hot path); others are dequantised.
        return [
            out if t.dtype == "float32" else dequantize(out, t)
            for t, out in zip(
                self._outputs, map(interpreter.get_tensor, self._output_indices), strict=True
            )
        ]

    def close(self) -> None:
        """Release the interpreter; ``detect`` raises afterwards. Idempotent."""
        self._state = None

    def __enter__(self) -> TFLiteDetector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_detector(config: DetectorConfig, catalog: Catalog | None = None) -> TFLiteDetector:
    """Open the detector that ``config`` describes (model name from the catalog, or a path).

    Format, labels and preprocessing set in ``config`` win over the model's conventions (its
    sidecar or registry entry), which win over the format's defaults. The labels are
    ``config.labels`` if set, else the conventions', else the ones embedded in the model, else
    the manifest's file (``TFLiteDetector.labels_source`` says which). Raises ``ModelError``
    subclasses: not pulled yet (says which command pulls it), checksum mismatch, bad file.
    """
    resolved = resolve_model(config.model, config.model_dir, catalog)
    conventions = resolved.conventions or Conventions()
    fmt = config.format or conventions.format
    if fmt is not None:
        get_decoder(fmt)  # an unknown name fails before the model is loaded
    if resolved.spec is not None and resolved.spec.format not in DECODERS:
        raise UnsupportedModelError(
            f"manifest format {resolved.spec.format!r} of {resolved.name} has no decoder "
            f"(known: {', '.join(DECODERS)})"
        )
    labels = config.labels
    if labels is None and conventions.labels is not None:
        labels = Path(conventions.labels)
    detector = TFLiteDetector(
        resolved.path,
        labels,
        threads=config.threads,
        score_threshold=config.score_threshold,
        model_name=resolved.name,
        sha256=resolved.sha256,
        fmt=fmt,
        preprocess=conventions.preprocess() | preprocess_overrides(config),
        iou_threshold=config.iou_threshold,
        default_labels=resolved.labels,
        delegate=config.delegate,
        model_version=resolved.version,
    )
    if fmt is None and resolved.spec is not None and resolved.spec.format != detector.format:
        detector.close()
        raise UnsupportedModelError(
            f"{resolved.path} looks like {detector.format!r} but the manifest says "
            f"{resolved.spec.format!r}; fix the manifest entry of {resolved.name}"
        )
    return detector


def preprocess_overrides(config: DetectorConfig) -> dict[str, Any]:
    """The ``PreprocessOptions`` fields that ``config`` sets; unset (null) fields are left to
    the model's conventions, then to the format's defaults."""
    fields: dict[str, Any] = {
        "resize": config.resize,
        "pad_value": config.pad_value,
        "align": config.letterbox_align,
        "channel_order": config.channel_order,
        "input_range": config.input_range,
    }
    return {k: v for k, v in fields.items() if v is not None}
