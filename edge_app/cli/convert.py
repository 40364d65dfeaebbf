"""``edge-app models convert SRC --out FILE.tflite``: convert, quantize, verify, register."""

from __future__ import annotations

__all__ = ["add_convert_action"]

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_app.cli.modelopts import add_convention_options, conventions_from_args
from edge_app.errors import EdgeAppError
from edge_app.models import default_model_dir, register_model

_MODES = ("none", "float16", "dynamic", "int8")  # edge_app.convert.QUANTIZE_MODES


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give WIDTHxHEIGHT, e.g. 320x320; got {text}") from None
    if not (8 <= width <= 4096 and 8 <= height <= 4096):
        raise argparse.ArgumentTypeError(f"sides must lie in 8..4096 pixels, got {text}")
    return width, height


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in 0..1, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"must lie in 1..10000, got {text}")
    return value


def add_convert_action(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser], model_dir_option: Any
) -> None:
    """Register ``convert`` under ``edge-app models``."""
    parser = cmds.add_parser(
        "convert",
        help="convert a SavedModel or Keras detector to TFLite (float16/int8), check it "
        "against the source on your footage, and register it",
        description="Convert with the TFLite converter; int8 is calibrated on frames sampled "
        "evenly from your clips or images, read and preprocessed as the appliance does. "
        "Then the TFLite model is compared with the source on held-out frames (numeric error "
        "per output, detections matched by IoU); below --min-agreement nothing is written "
        "unless --force. Writes FILE.tflite and its sidecar FILE.tflite.yaml; with --name "
        "and --version also registers it (pending) with its lineage. Needs the [convert] "
        "extra (TensorFlow).",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="SavedModel folder or .keras/.h5")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the .tflite")
    parser.add_argument(
        "--quantize",
        choices=_MODES,
        default="none",
        help="none (float32), float16, dynamic (int8 weights) or int8 (full integer, "
        "calibrated; default none)",
    )
    parser.add_argument(
        "--int8-io",
        choices=("uint8", "int8"),
        default="uint8",
        help="input and output tensor type of an int8 model (default uint8)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        nargs="+",
        required=True,
        metavar="VIDEO_OR_DIR",
        help="your clips, images or folders of them: calibration and held-out frames",
    )
    parser.add_argument(
        "--frames", type=_count, default=100, help="calibration frames (default 100)"
    )
    parser.add_argument(
        "--held-out", type=_count, default=20, help="frames that check the result (default 20)"
    )
    parser.add_argument(
        "--input-size", type=_size, metavar="WxH", help="for sources whose input size is open"
    )
    parser.add_argument(
        "--min-agreement",
        type=_share,
        default=0.9,
        help="lowest detection agreement (F1 of matched boxes, 0..1) to write (default 0.9)",
    )
    parser.add_argument(
        "--threshold", type=_share, default=0.5, help="detection score for the check (0.5)"
    )
    parser.add_argument("--force", action="store_true", help="write even below --min-agreement")
    parser.add_argument("--name", help="register as this name (with --version)")
    parser.add_argument("--version", help="register under this version (with --name)")
    add_convention_options(parser)
    model_dir_option(parser)
    parser.set_defaults(func=_convert)


def _fail(exc: EdgeAppError | str) -> int:
    print(f"edge-app models convert: error: {exc}", file=sys.stderr)
    return 2


def _convert(args: argparse.Namespace) -> int:
    if (args.name is None) != (args.version is None):
        return _fail("give --name and --version together (or neither)")
    from edge_app.convert import ConvertOptions, convert_model  # noqa: PLC0415  # TensorFlow

    options = ConvertOptions(
        source=args.source,
        out=args.out,
        calibration=tuple(args.calibration),
        quantize=args.quantize,
        frames=args.frames,
        held_out=args.held_out,
        input_size=args.input_size,
        io_type=args.int8_io,
        conventions=conventions_from_args(args),
        min_agreement=args.min_agreement,
        score_threshold=args.threshold,
        force=args.force,
    )
    try:
        report = convert_model(options, lambda line: print(line, file=sys.stderr, flush=True))
    except EdgeAppError as exc:
        return _fail(exc)
    _print_table(report)
    if not report.written:
        return _fail(
            f"detection agreement {report.agreement.agreement:.3f} is below --min-agreement "
            f"{args.min_agreement}: nothing written; calibrate on more representative footage, "
            "try a milder --quantize, or --force"
        )
    print(f"wrote {report.out} and {report.out}.yaml (format {report.conventions.format})")
    if args.name is not None:
        try:
            entry = register_model(
                args.model_dir or default_model_dir(),
                report.out,
                args.name,
                args.version,
                sha256=report.sha256,
                conventions=report.conventions,
                lineage=report.lineage,
            )
        except EdgeAppError as exc:
            return _fail(exc)
        print(
            f"registered {entry.ref} (pending); approve it for remote config with: "
            f"edge-app models approve {entry.name} {entry.version}"
        )
    return 0


def _print_table(report: Any) -> None:
    print(f"{'OUTPUT':<32} {'MAX ABS ERR':>12} {'MEAN ABS ERR':>13} {'REL':>8}")
    for e in report.outputs:
        print(f"{e.name[:32]:<32} {e.max_abs:>12.4g} {e.mean_abs:>13.4g} {e.relative:>8.2%}")
    a = report.agreement
    print(
        f"detections on {a.frames} held-out frames: source {a.source_detections}, matched "
        f"{a.matched}, missed {a.missed}, extra {a.extra}; mean IoU {a.mean_iou:.3f}, score "
        f"delta mean {a.mean_score_delta:.3f} max {a.max_score_delta:.3f}; agreement "
        f"{a.agreement:.3f}"
    )
    print(f"size {report.bytes / 1e6:.2f} MB, invoke {report.invoke_ms:.2f} ms (1 thread)")
