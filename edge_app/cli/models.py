"""``edge-app models list | pull [NAME] | inspect FILE | add | approve | reject``: the model
catalog and the local registry from the shell."""

from __future__ import annotations

__all__ = ["register"]

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from edge_app.cli.convert import add_convert_action
from edge_app.cli.model_registry import add_registry_actions, print_registry, registry_rows
from edge_app.cli.probe import add_probe_action
from edge_app.errors import EdgeAppError
from edge_app.models import Catalog, ModelSpec, default_model_dir, load_manifest, pull, sha256_file
from edge_app.vision import inspect_model


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "models", help="list, pull, inspect, register and approve detection models"
    )
    cmds = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = cmds.add_parser(
        "list",
        help="known models (size, license, cached or not) and registered ones (version, status)",
    )
    _model_dir_option(listing)
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(func=_list)

    pulling = cmds.add_parser("pull", help="fetch a model into the cache and verify its sha256")
    pulling.add_argument("name", nargs="?", help="model name (default: the manifest's default)")
    _model_dir_option(pulling)
    pulling.add_argument(
        "--timeout", type=float, default=60.0, help="network timeout, seconds (default 60)"
    )
    pulling.set_defaults(func=_pull)

    inspecting = cmds.add_parser(
        "inspect",
        help="show a .tflite file's tensors and format; exit 1 if no decoder fits it",
    )
    inspecting.add_argument("file", type=Path, help="path to a .tflite model")
    inspecting.add_argument("--json", action="store_true", help="print one JSON document")
    inspecting.set_defaults(func=_inspect)
    add_registry_actions(cmds, _model_dir_option)
    add_convert_action(cmds, _model_dir_option)
    add_probe_action(cmds, _model_dir_option)


def _model_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model cache (default: $EDGE_APP_MODEL_DIR or ~/.cache/edge-app/models)",
    )


def _fail(exc: EdgeAppError) -> int:
    print(f"edge-app models: error: {exc}", file=sys.stderr)
    return 2


def _cache_state(spec: ModelSpec, model_dir: Path) -> str:
    path = model_dir / spec.file
    if not path.is_file():
        return "no"
    if path.stat().st_size != spec.bytes or sha256_file(path) != spec.sha256:
        return "corrupt (pull again)"
    return "yes"


def _list(args: argparse.Namespace) -> int:
    model_dir: Path = args.model_dir or default_model_dir()
    try:
        catalog = load_manifest()
        registered = registry_rows(model_dir)
    except EdgeAppError as exc:
        return _fail(exc)
    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "default": spec.name == catalog.default,
            "file": spec.file,
            "bytes": spec.bytes,
            "license": spec.license,
            "format": spec.format,
            "cached": _cache_state(spec, model_dir),
        }
        for spec in catalog.models
    ]
    if args.json:
        doc = {"model_dir": str(model_dir), "models": rows, "registry": registered}
        print(json.dumps(doc, indent=2))
        return 0
    print(f"model cache: {model_dir}")
    print(f"{'NAME':<28} {'SIZE':>9}  {'LICENSE':<12} {'FORMAT':<16} CACHED")
    for row in rows:
        name = f"{row['name']}{' *' if row['default'] else ''}"
        size = f"{row['bytes'] / 1e6:.1f} MB"
        print(f"{name:<28} {size:>9}  {row['license']:<12} {row['format']:<16} {row['cached']}")
    print("* default model")
    print_registry(registered)
    return 0


class _Progress:
    """Download progress on stderr, at most a few updates a second."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self._name = name
        self._stream = stream
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < 0.25 and done != total:
            return
        self._last = now
        of = f" / {total / 1e6:.1f}" if total else ""
        end = "\r" if self._stream.isatty() else "\n"
        self._stream.write(f"pulling {self._name}: {done / 1e6:.1f}{of} MB{end}")
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown and self._stream.isatty():
            self._stream.write("\n")


def _pull(args: argparse.Namespace) -> int:
    model_dir: Path = args.model_dir or default_model_dir()
    try:
        catalog: Catalog = load_manifest()
        spec = catalog.get(args.name or catalog.default)
        target = model_dir / spec.file
        was_cached = target.is_file() and sha256_file(target) == spec.sha256
        progress = _Progress(spec.name, sys.stderr)
        try:
            path = pull(spec, model_dir, progress=progress, timeout=args.timeout)
        finally:
            progress.finish()
    except EdgeAppError as exc:
        return _fail(exc)
    state = "already cached, sha256 verified" if was_cached else "pulled, sha256 verified"
    print(f"{spec.name}: {path} ({state})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    try:
        report = inspect_model(args.file)
    except EdgeAppError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0 if report["format"] else 1


def _print_report(report: dict[str, Any]) -> None:
    print(f"file:     {report['path']}")
    print(f"size:     {report['bytes']} bytes")
    print(f"sha256:   {report['sha256']}")
    print(f"manifest: {report['manifest_name'] or '(not in the manifest)'}")
    print(f"runtime:  {report['runtime']}")
    labels = report["labels"]
    print(f"labels:   {labels['count']} from {labels['source']}")
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for t in report[kind]:
            quant = t["quantization"]
            q = f"  scale {quant['scale']:g} zero point {quant['zero_point']}"
            print(
                f"  {t['name']:<40} {t['shape']!s:<18} {t['dtype']:<8}{q if quant['scale'] else ''}"
            )
    if report["format"]:
        print(f"format:   {report['format']}")
        pre = report["preprocessing"]
        pad = f", pad {pre['pad_value']} {pre['align']}" if pre["resize"] == "letterbox" else ""
        scaling = "pixels as they are" if pre["quantized_input"] else pre["input_range"]
        print(
            f"preprocessing: {pre['resize']}{pad}, {pre['channel_order']}, "
            f"input {pre['width']}x{pre['height']} {pre['dtype']} ({scaling})"
        )
    else:
        print(f"format:   none; {report['format_error']}")
