"""``edge-app detect PATH... --model FILE_OR_NAME``: run the detector on images and videos.

Prints a table, or with ``--json`` exactly one JSON document::

    {"model": {"name", "sha256", "runtime", "path"},
     "results": [{"source": PATH, "frame": INDEX,
                  "detections": [{"label", "score", "bbox": [x1, y1, x2, y2]}]}]}

``bbox`` is normalised 0..1 of the frame; ``frame`` is the 0-based index in read order (0 for
an image). Errors (missing file, unreadable image or video, bad model) go to stderr, exit 2.
"""

from __future__ import annotations

__all__ = ["IMAGE_SUFFIXES", "frames_of", "positive", "register"]

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from edge_app.cli.modelopts import add_convention_options, conventions_from_args
from edge_app.config import DetectorConfig, field_errors, load_config
from edge_app.domain import Detections
from edge_app.errors import ConfigError, EdgeAppError, SourceError
from edge_app.vision import TFLiteDetector, open_detector

IMAGE_SUFFIXES = frozenset({".bmp", ".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".ppm"})
_DEFAULT_MODEL = DetectorConfig().model


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in 0..1, got {text}")
    return value


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "detect",
        help="run the detector on images and videos",
        description="Detect objects in images (bmp, jpg, png, ...) and videos (every frame, "
        "or every Nth). Boxes are x1 y1 x2 y2 normalised 0..1 of the frame.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="images or videos")
    parser.add_argument(
        "--model",
        metavar="FILE_OR_NAME",
        help="manifest model name, registered NAME@VERSION or .tflite path (default: the "
        f"--config file's, else {_DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="use this config file's detector section (model, format, preprocessing, "
        "threshold); options given here override it",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="label file (default: the model's embedded labels, else the manifest's)",
    )
    parser.add_argument(
        "--threshold", type=_threshold, help="lowest score kept, 0..1 (default 0.5)"
    )
    parser.add_argument("--threads", type=positive, help="CPU threads (default 2)")
    parser.add_argument(
        "--every",
        type=positive,
        default=1,
        metavar="N",
        help="every Nth video frame (default 1)",
    )
    parser.add_argument("--model-dir", type=Path, help="model cache for manifest names")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_convention_options(parser, labels=False)
    parser.set_defaults(func=_detect)


def _fail(message: str) -> int:
    print(f"edge-app detect: error: {message}", file=sys.stderr)
    return 2


def _detect(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        return _fail(f"no such file: {', '.join(missing)}")
    not_files = [str(p) for p in args.paths if not p.is_file()]
    if not_files:
        return _fail(f"not a file: {', '.join(not_files)}; give image or video files")
    given = {
        "model": args.model,
        "labels": args.labels,
        "threads": args.threads,
        "score_threshold": args.threshold,
        "model_dir": args.model_dir,
        **conventions_from_args(args).model_dump(exclude_none=True),
    }
    try:
        base = load_config(args.config).detector if args.config else DetectorConfig()
        config = DetectorConfig.model_validate(
            base.model_dump() | {k: v for k, v in given.items() if v is not None}
        )
    except ConfigError as exc:
        return _fail(str(exc))
    except ValidationError as exc:
        # field paths and reasons only: pydantic's own text repeats the value given
        return _fail("; ".join(str(e) for e in field_errors(exc)))
    try:
        with open_detector(config) as detector:
            results = _run(detector, args)
    except EdgeAppError as exc:
        return _fail(str(exc))
    if args.json:
        doc = {
            "model": {
                "name": detector.model.name,
                "sha256": detector.sha256,
                "runtime": detector.runtime_name,
                "path": str(detector.path),
                "labels": detector.labels_source,
            },
            "results": results,
        }
        print(json.dumps(doc))
    return 0


def _run(detector: TFLiteDetector, args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    width = max(len("SOURCE"), *(len(str(p)) for p in args.paths))
    if not args.json:
        print(f"model {detector.model.name} ({detector.sha256[:12]}, {detector.runtime_name})")
        print(f"{'SOURCE':<{width}} {'FRAME':>6}  {'LABEL':<16} {'SCORE':>5}  BBOX x1 y1 x2 y2")
    for path in args.paths:
        for index, image in frames_of(path, args.every):
            found = _as_json(detector.detect(image))
            results.append({"source": str(path), "frame": index, "detections": found})
            if not args.json:
                _print_frame(f"{path!s:<{width}}", index, found)
    return results


def _as_json(detections: Detections) -> list[dict[str, Any]]:
    return [
        {"label": d.label, "score": round(d.score, 4), "bbox": [round(v, 4) for v in d.bbox]}
        for d in detections
    ]


def _print_frame(source: str, index: int, found: list[dict[str, Any]]) -> None:
    if not found:
        print(f"{source} {index:>6}  (nothing)")
    for d in found:
        box = " ".join(f"{v:.3f}" for v in d["bbox"])
        print(f"{source} {index:>6}  {d['label']:<16} {d['score']:>5.2f}  {box}")


def frames_of(path: Path, every: int) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """(index, BGR image) of an image (index 0) or of every ``every``-th video frame."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read image {path}: not an image OpenCV can decode")
        yield 0, np.asarray(image, dtype=np.uint8)
        return
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SourceError(f"cannot open video {path}: not a video OpenCV/FFmpeg can decode")
        index = 0
        decoded = 0
        while True:
            if index % every == 0:
                ok, frame = capture.read()
                if ok:
                    decoded += 1
                    yield index, np.asarray(frame, dtype=np.uint8)
            else:
                ok = capture.grab()  # skipped frames are demuxed, not converted
            if not ok:
                break
            index += 1
        if decoded == 0:
            raise SourceError(f"cannot read video {path}: no frame could be decoded")
    finally:
        capture.release()
