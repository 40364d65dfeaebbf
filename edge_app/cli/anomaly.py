"""``edge-app anomaly fit|eval``: learn what normal looks like, and check a fitted model.

``fit VIDEO_OR_DIR... --extractor FILE --out FILE`` learns from videos or folders of images of
good parts (no labels) and writes the model file (0600) with its lineage. ``eval --model FILE
--extractor FILE --normal VIDEO_OR_DIR... --defects DIR`` prints frame-level AUROC, the
false-alarm rate on normal frames and the localisation hit rate on a labelled set: ``DIR``
holds images and ``boxes.json``, ``{"image.png": [[x1, y1, x2, y2], ...]}`` (normalised
0..1). Errors go to stderr, one line, exit 2.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.cli.detect import IMAGE_SUFFIXES, frames_of, positive
from edge_app.config import CameraConfig, load_config
from edge_app.errors import EdgeAppError, SourceError
from edge_app.vision.anomaly import AnomalyModel, AnomalyScorer, Region
from edge_app.vision.anomaly_fit import FitOptions, Labelled, evaluate, fit_anomaly
from edge_app.vision.features import FeatureExtractor

_VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".gif", ".webm", ".m4v"})


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _region(text: str) -> Region:
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give x1,y1,x2,y2 (four numbers), got {text!r}") from None
    if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
        raise argparse.ArgumentTypeError(
            f"region {text} is not inside the frame: need 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1"
        )
    return x1, y1, x2, y2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "anomaly", help="fit and evaluate anomaly models learned from normal footage"
    )
    cmds = parser.add_subparsers(dest="anomaly_command", required=True, metavar="ACTION")
    fit = cmds.add_parser(
        "fit",
        help="learn what normal looks like from videos or images of good parts",
        description="Learn an anomaly model from normal footage only (no labels): patch "
        "features of a TFLite backbone kept as a memory bank; the threshold is calibrated on "
        "the last share of each source (held out). Writes FILE (0600) with its lineage.",
    )
    fit.add_argument(
        "paths", nargs="+", type=Path, metavar="VIDEO_OR_DIR", help="videos, images or folders"
    )
    fit.add_argument("--out", type=Path, required=True, metavar="FILE", help="model file to write")
    _extractor_arg(fit)
    fit.add_argument(
        "--camera-config", type=Path, metavar="FILE", help="config file holding --camera"
    )
    fit.add_argument(
        "--camera", metavar="NAME", help="camera whose resize and zones apply to the frames"
    )
    where = fit.add_mutually_exclusive_group()
    where.add_argument(
        "--zone", metavar="NAME", help="inspect only the box around this zone of --camera"
    )
    where.add_argument(
        "--region",
        type=_region,
        metavar="X1,Y1,X2,Y2",
        help="inspect only this part of the frame (normalised 0..1)",
    )
    fit.add_argument(
        "--every",
        type=positive,
        default=1,
        metavar="N",
        help="every Nth video frame (default 1)",
    )
    fit.add_argument(
        "--max-frames",
        type=positive,
        default=600,
        metavar="N",
        help="most frames used per source, evenly spread (default 600)",
    )
    fit.add_argument(
        "--holdout",
        type=_share,
        default=0.2,
        help="share of each source (its end) held out to calibrate the threshold (default 0.2)",
    )
    fit.add_argument(
        "--target-far",
        type=_share,
        default=0.001,
        help="false alarms per inspected normal frame aimed at (default 0.001)",
    )
    fit.add_argument("--json", action="store_true", help="print the lineage as one JSON document")
    fit.set_defaults(func=_fit)

    ev = cmds.add_parser(
        "eval",
        help="AUROC, false alarms and localisation of a fitted model",
        description="Score normal frames and a labelled defect set: DIR holds images and "
        'boxes.json, {"image.png": [[x1, y1, x2, y2], ...]} normalised 0..1. Prints '
        "frame-level AUROC, the false-alarm rate on the normal frames, the share of defects "
        "detected and the share whose box covers a defect's centre.",
    )
    ev.add_argument("--model", type=Path, required=True, metavar="FILE", help="fitted model")
    _extractor_arg(ev)
    ev.add_argument(
        "--normal",
        type=Path,
        nargs="+",
        required=True,
        metavar="VIDEO_OR_DIR",
        help="normal footage not used for fitting",
    )
    ev.add_argument(
        "--defects", type=Path, required=True, metavar="DIR", help="images and their boxes.json"
    )
    ev.add_argument(
        "--every",
        type=positive,
        default=1,
        metavar="N",
        help="every Nth video frame (default 1)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON document")
    ev.set_defaults(func=_eval)


def _extractor_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--extractor",
        type=Path,
        required=True,
        metavar="FILE",
        help="TFLite image backbone, e.g. mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
    )
    parser.add_argument(
        "--threads", type=positive, default=2, help="CPU threads of the extractor (default 2)"
    )


def _fail(message: str) -> int:
    print(f"edge-app anomaly: error: {message}", file=sys.stderr)
    return 2


def _files(paths: list[Path]) -> list[list[Path]]:
    """Sources: each video on its own; the images of a folder (name order) as one source,
    and each video in it on its own; a lone image alone."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SourceError(f"no such file or folder: {', '.join(missing)}")
    sources: list[list[Path]] = []
    for path in paths:
        if not path.is_dir():
            sources.append([path])
            continue
        inside = sorted(p for p in path.iterdir() if p.is_file())
        images = [p for p in inside if p.suffix.lower() in IMAGE_SUFFIXES]
        videos = [p for p in inside if p.suffix.lower() in _VIDEO_SUFFIXES]
        if not images and not videos:
            raise SourceError(f"folder {path} holds no images or videos")
        sources.extend([images] if images else [])
        sources.extend([v] for v in videos)
    return sources


def _camera(args: argparse.Namespace) -> CameraConfig | None:
    if args.camera_config is None:
        if args.camera is not None or args.zone is not None:
            raise SourceError("--camera and --zone need --camera-config FILE")
        return None
    config = load_config(args.camera_config)
    names = [c.name for c in config.cameras]
    if args.camera is None and len(names) > 1:
        raise SourceError(f"--camera-config has several cameras; name one with --camera ({names})")
    name = args.camera or names[0]
    camera = next((c for c in config.cameras if c.name == name), None)
    if camera is None:
        raise SourceError(f"camera {name!r} is not in {args.camera_config}; cameras: {names}")
    return camera


def _zone_region(camera: CameraConfig | None, zone: str | None) -> Region | None:
    if zone is None:
        return None
    assert camera is not None  # _camera refused --zone without a config
    found = next((z for z in camera.zones if z.name == zone), None)
    if found is None:
        names = [z.name for z in camera.zones]
        raise SourceError(f"camera {camera.name!r} has no zone {zone!r}; its zones: {names}")
    xs, ys = [p[0] for p in found.polygon], [p[1] for p in found.polygon]
    return max(min(xs), 0.0), max(min(ys), 0.0), min(max(xs), 1.0), min(max(ys), 1.0)


def _source_frames(
    files: list[Path], every: int, limit: int, camera: CameraConfig | None
) -> list[NDArray[np.uint8]]:
    frames = [image for path in files for _, image in frames_of(path, every)]
    if len(frames) > limit:  # evenly spread, so the whole clip is represented
        picks = np.linspace(0, len(frames) - 1, limit).round().astype(int)
        frames = [frames[i] for i in picks]
    if camera is not None and camera.resize is not None:
        frames = [np.asarray(cv2.resize(f, camera.resize), np.uint8) for f in frames]
    return frames


def _fit(args: argparse.Namespace) -> int:
    try:
        camera = _camera(args)
        region = args.region or _zone_region(camera, args.zone)
        files = _files(args.paths)
        extractor = FeatureExtractor(args.extractor, threads=args.threads)
        sources = []
        for group in files:
            frames = _source_frames(group, args.every, args.max_frames, camera)
            name = group[0].name if len(group) == 1 else f"{group[0].parent.name}/"
            _check_region(name, frames[0], region)
            sources.append((name, frames))
        options = FitOptions(region=region, holdout=args.holdout, target_far=args.target_far)
        total = sum(len(f) for _, f in sources)
        model = fit_anomaly(sources, extractor, options, _progress(total))
        model.save(args.out)
    except EdgeAppError as exc:
        return _fail(str(exc))
    meta = model.meta | {"threshold": round(model.threshold, 4), "out": str(args.out)}
    if args.json:
        print(json.dumps(meta))
        return 0
    cal = meta["calibration"]
    print(
        f"fitted on {meta['frames']['train']} frames, calibrated on {meta['frames']['held_out']} "
        f"held-out frames in {meta['fit_s']} s"
    )
    print(
        f"threshold {meta['threshold']} (held-out max {cal['held_out_max']}, p95 "
        f"{cal['held_out_p95']}, mean {cal['held_out_mean']}); bank {meta['bank']['kept']} of "
        f"{meta['bank']['patches']} patches"
    )
    print(f"wrote {args.out}")
    return 0


def _check_region(name: str, frame: NDArray[np.uint8], region: Region | None) -> None:
    if region is None:
        return
    h, w = frame.shape[:2]
    cw, ch = (region[2] - region[0]) * w, (region[3] - region[1]) * h
    if cw < 16 or ch < 16:
        raise SourceError(
            f"the inspected region is {cw:.0f} x {ch:.0f} pixels of {name}'s {w} x {h} "
            "frames; give a zone or region of at least 16 x 16 pixels"
        )


def _progress(total: int) -> Any:
    step = max(1, total // 10)

    def show(stage: str, done: int, of: int) -> None:
        of = of or total
        if done % step == 0 or done == of:
            print(f"{stage}: {done}/{of} frames", file=sys.stderr, flush=True)

    return show


def _labelled(folder: Path) -> Iterator[Labelled]:
    index = folder / "boxes.json"
    if not index.is_file():
        raise SourceError(f"{folder} has no boxes.json naming each image's defect boxes")
    try:
        boxes = json.loads(index.read_text(encoding="utf-8"))
        items = [(str(k), [tuple(float(v) for v in b) for b in bs]) for k, bs in boxes.items()]
    except (ValueError, TypeError, AttributeError) as exc:
        raise SourceError(
            f'{index} must be {{"image.png": [[x1, y1, x2, y2], ...]}}: {exc}'
        ) from exc
    for name, found in items:
        if not found or any(len(b) != 4 for b in found):
            raise SourceError(f"{index}: {name} needs at least one box of four numbers")
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read image {folder / name} listed in {index}")
        yield Labelled(np.asarray(image, np.uint8), tuple(found))  # type: ignore[arg-type]


def _eval(args: argparse.Namespace) -> int:
    try:
        model = AnomalyModel.load(args.model)
        layer = model.meta.get("extractor", {}).get("layer")
        scorer = AnomalyScorer(
            model, FeatureExtractor(args.extractor, threads=args.threads, layer=layer)
        )
        normal = (
            image
            for group in _files(args.normal)
            for path in group
            for _, image in frames_of(path, args.every)
        )
        result = evaluate(scorer, normal, _labelled(args.defects))
    except EdgeAppError as exc:
        return _fail(str(exc))
    doc = result.as_dict() | {"threshold": round(model.threshold, 4)}
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"normal frames {result.normal_frames}, defect frames {result.defect_frames}")
    print(f"frame AUROC       {result.auroc:.3f}")
    print(f"false alarms      {result.false_alarm_rate:.2%} of normal frames")
    print(f"defects detected  {result.detected:.2%}")
    print(f"localisation      {result.localisation:.2%} (box covers the defect's centre)")
    print(f"cost              {result.ms_per_frame:.1f} ms per frame")
    return 0
