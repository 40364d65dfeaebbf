"""``edge-app models probe FILE IMAGE_OR_VIDEO...``: find how a model wants to be fed.

Tries the plausible output formats (the one the tensors suggest, and YOLOX for a YOLOv5
layout, which shapes cannot tell apart) and the preprocessing variants that matter for the
model's input (channel order; pixel range for float inputs; stretch or letterbox, centred or
top-left), runs each on frames sampled evenly from the footage, and ranks them by how
consistently and confidently they detect: the share of frames with a detection times the
mean best score. The format's reference defaults are kept unless a variant does clearly
better (a model that detects both ways is trusted to its exporter's conventions).
``--write`` puts the winner in the model's sidecar (``FILE.tflite.yaml``).
"""

from __future__ import annotations

__all__ = ["Trial", "add_probe_action", "choose", "probe_model"]

import argparse
import itertools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.convert.frames import sample_frames
from edge_app.domain import Image
from edge_app.errors import EdgeAppError, UnsupportedModelError
from edge_app.models import Conventions, read_sidecar, sidecar_path, write_sidecar
from edge_app.vision import DECODERS, TFLiteDetector, inspect_model
from edge_app.vision.preprocess import default_options

_PROBE_THRESHOLD = 0.3


@dataclass(frozen=True, slots=True)
class Trial:
    """One way of feeding the model and how it did on the frames."""

    conventions: Conventions
    frames_with_detections: int
    frames: int
    mean_best_score: float
    changes: int
    """How many settings differ from the format's reference defaults."""

    @property
    def rank(self) -> float:
        return self.frames_with_detections / max(1, self.frames) * self.mean_best_score


def _formats(report: dict[str, Any]) -> list[str]:
    fmt = report["format"]
    if fmt == "yolov5":
        return ["yolov5", "yolox"]
    return [fmt] if fmt else sorted(DECODERS)


def _variants(fmt: str, quantized: bool) -> list[Conventions]:
    base = default_options(fmt)
    ranges = [base.input_range] if quantized else ["-1..1", "0..1", "0..255"]
    found: list[Conventions] = []
    for order, value_range, (resize, align) in itertools.product(
        ("rgb", "bgr"),
        ranges,
        (("stretch", "center"), ("letterbox", "center"), ("letterbox", "top_left")),
    ):
        found.append(
            Conventions(
                format=fmt,
                resize=resize,
                letterbox_align=align,
                channel_order=order,
                input_range=value_range,
            )
        )
    # the format's own defaults first: among equals, the least surprising wins
    return sorted(found, key=lambda c: _distance(c, base))


def _distance(conv: Conventions, base: Any) -> int:
    return sum(
        (
            conv.resize != base.resize,
            conv.resize == "letterbox" and conv.letterbox_align != base.align,
            conv.channel_order != base.channel_order,
            conv.input_range != base.input_range,
        )
    )


def probe_model(path: Path, images: list[Image], labels: Path | None = None) -> list[Trial]:
    """Every plausible way of feeding ``path``, best first. Raises ``ModelError`` if the
    file is not a model no decoder takes."""
    report = inspect_model(path)
    quantized = bool(report["inputs"]) and report["inputs"][0]["dtype"] in {"uint8", "int8"}
    trials: list[Trial] = []
    quiet = logging.getLogger("edge_app.vision")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # dozens of loads: their "detector ready" lines are noise
    try:
        for fmt in _formats(report):
            for conv in _variants(fmt, quantized):
                try:
                    detector = TFLiteDetector(
                        path,
                        labels,
                        threads=1,
                        score_threshold=_PROBE_THRESHOLD,
                        fmt=fmt,
                        preprocess=conv.preprocess(),
                    )
                except UnsupportedModelError:
                    break  # this format does not fit the tensors at all
                with detector:
                    best = [
                        max((d.score for d in detector.detect(im)), default=0.0) for im in images
                    ]
                hits = sum(1 for b in best if b > 0)
                changes = _distance(conv, default_options(fmt))
                trials.append(Trial(conv, hits, len(images), float(np.mean(best)), changes))
    finally:
        quiet.setLevel(level)
    if not trials:
        raise UnsupportedModelError(f"no output format fits {path}: {report['format_error']}")
    return sorted(trials, key=lambda t: -t.rank)  # stable: defaults first among equals


_CLEARLY_BETTER = 1.2  # a variant must beat the reference defaults by 20% to replace them


def choose(trials: list[Trial]) -> Trial:
    """The trial to adopt: the best format's reference defaults, unless another variant
    detects clearly better (a model that works both ways is trusted to its exporter's
    conventions; one that works only another way gets that way)."""
    best = trials[0]
    defaults = [t for t in trials if t.changes == 0]
    if not defaults:
        return best
    reference = max(defaults, key=lambda t: t.rank)
    if best.rank > _CLEARLY_BETTER * reference.rank + 0.02:
        return best
    return reference


def add_probe_action(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser], model_dir_option: Any
) -> None:
    """Register ``probe`` under ``edge-app models``."""
    del model_dir_option  # probe reads a file, not the cache
    parser = cmds.add_parser(
        "probe",
        help="find the format and preprocessing a .tflite model detects with, on your footage",
        description="Tries the plausible output formats and preprocessing variants (channel "
        "order, input range, stretch or letterbox, centred or top-left) on frames sampled "
        "from your images or clips, and ranks them by the share of frames with a detection "
        f"(score >= {_PROBE_THRESHOLD}) times the mean best score. --write stores the best "
        "in the model's sidecar FILE.tflite.yaml, which detect, run and models add read.",
    )
    parser.add_argument("file", type=Path, help="the .tflite model")
    parser.add_argument(
        "footage", type=Path, nargs="+", metavar="IMAGE_OR_VIDEO", help="images, clips, folders"
    )
    parser.add_argument(
        "--frames", type=int, default=12, help="frames sampled from the footage (default 12)"
    )
    parser.add_argument("--labels", type=Path, help="label file (kept in the sidecar)")
    parser.add_argument("--write", action="store_true", help="write the best into the sidecar")
    parser.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> int:
    try:
        if not args.file.is_file():
            raise UnsupportedModelError(f"{args.file} is not a file; give a .tflite model")
        spec = inspect_model(args.file)["inputs"][0]["shape"]
        size = (int(spec[2]), int(spec[1])) if len(spec) == 4 else (1, 1)
        frames = sample_frames(args.footage, max(1, args.frames), 0, size).calibration
        trials = probe_model(args.file, list(frames), args.labels)
    except EdgeAppError as exc:
        print(f"edge-app models probe: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{'FORMAT':<16} {'RESIZE':<10} {'ALIGN':<9} {'ORDER':<6} {'RANGE':<7} {'FRAMES':>7} SCORE"
    )
    for trial in trials[:8]:
        c = trial.conventions
        align = c.letterbox_align if c.resize == "letterbox" else "-"
        print(
            f"{c.format:<16} {c.resize:<10} {align:<9} {c.channel_order:<6} {c.input_range:<7} "
            f"{trial.frames_with_detections:>3}/{trial.frames:<3} {trial.mean_best_score:.3f}"
        )
    best = choose(trials)
    if best.frames_with_detections == 0:
        print(
            "no variant detects anything on this footage: try footage with the objects the "
            "model was trained on, or check the model's output format"
        )
        return 1
    conventions = best.conventions
    if args.labels is not None:
        conventions = conventions.model_copy(update={"labels": str(args.labels.resolve())})
    if not args.write:
        print(f"best: {_describe(conventions)}; write it to {sidecar_path(args.file)} with --write")
        return 0
    old = read_sidecar(args.file) if sidecar_path(args.file).exists() else None
    if old is not None and old.labels and conventions.labels is None:
        conventions = conventions.model_copy(update={"labels": old.labels})
    try:
        written = write_sidecar(args.file, conventions)
    except EdgeAppError as exc:
        print(f"edge-app models probe: error: {exc}", file=sys.stderr)
        return 2
    print(f"best: {_describe(conventions)}; wrote {written}")
    return 0


def _describe(c: Conventions) -> str:
    align = f" {c.letterbox_align}" if c.resize == "letterbox" else ""
    return f"format {c.format}, {c.resize}{align}, {c.channel_order}, {c.input_range}"
