"""``edge-app models add | approve | reject``, and the registry half of ``models list``."""

from __future__ import annotations

__all__ = ["add_registry_actions", "print_registry", "registry_rows"]

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_app.cli.modelopts import add_convention_options, conventions_from_args, merged
from edge_app.errors import EdgeAppError
from edge_app.models import (
    Conventions,
    ModelStatus,
    Registry,
    default_model_dir,
    read_sidecar,
    source_digest,
)
from edge_app.vision import TFLiteDetector


def add_registry_actions(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser],
    model_dir_option: Any,
) -> None:
    """Register ``add``, ``approve`` and ``reject`` under ``edge-app models``."""
    adding = cmds.add_parser(
        "add",
        help="register a .tflite file as NAME@VERSION (pending), checked and with its lineage",
        description="Copy a TFLite model into the local registry under a name and an "
        "immutable version. The model is loaded and test-run first, and its format pinned, "
        "with its conventions taken from the options, else from its sidecar "
        "(FILE.tflite.yaml). A config selects it as detector.model: NAME@VERSION; remote "
        "config only once approved.",
    )
    adding.add_argument("file", type=Path, help="the .tflite model")
    adding.add_argument("--name", required=True, help="model name (letters, digits, _ . -)")
    adding.add_argument("--version", required=True, help="version, e.g. 1 or 2026.12.1")
    adding.add_argument(
        "--source",
        type=Path,
        help="the model it was made from (SavedModel folder or Keras file): its hash is kept "
        "in the lineage",
    )
    add_convention_options(adding)
    model_dir_option(adding)
    adding.set_defaults(func=_add)
    for action, status, text in (
        ("approve", ModelStatus.APPROVED, "allow remote config to choose NAME@VERSION"),
        ("reject", ModelStatus.REJECTED, "refuse NAME@VERSION everywhere (kept for lineage)"),
    ):
        parser = cmds.add_parser(action, help=text)
        parser.add_argument("name", help="registered model name")
        parser.add_argument("version", help="its version")
        model_dir_option(parser)
        parser.set_defaults(func=_set_status, status=status)


def _fail(exc: EdgeAppError | str) -> int:
    print(f"edge-app models: error: {exc}", file=sys.stderr)
    return 2


def verified_conventions(file: Path, conventions: Conventions) -> Conventions:
    """Load and test-run ``file`` as ``conventions`` say; the conventions with the format it
    decodes as pinned. Raises ``ModelError`` (not a model, no image input, no decoder)."""
    labels = Path(conventions.labels) if conventions.labels is not None else None
    with TFLiteDetector(
        file, labels, threads=1, fmt=conventions.format, preprocess=conventions.preprocess()
    ) as detector:
        return conventions.model_copy(update={"format": detector.format})


def _add(args: argparse.Namespace) -> int:
    model_dir: Path = args.model_dir or default_model_dir()
    try:
        if not args.file.is_file():
            return _fail(f"{args.file} is not a file; give a .tflite model")
        conventions = merged(read_sidecar(args.file), conventions_from_args(args))
        conventions = verified_conventions(args.file, conventions)
        lineage: dict[str, Any] = {"file": str(args.file.resolve())}
        if args.source is not None:
            lineage["source"] = {
                "path": str(args.source.resolve()),
                "sha256": source_digest(args.source),
            }
        entry = Registry(model_dir).add(
            args.file, args.name, args.version, conventions=conventions, lineage=lineage
        )
    except EdgeAppError as exc:
        return _fail(exc)
    print(
        f"registered {entry.ref} ({entry.status}, format {entry.conventions.format}, sha256 "
        f"{entry.sha256[:12]}) in {model_dir}; select it with detector.model: {entry.ref}; "
        f"let remote config choose it with: edge-app models approve {entry.name} {entry.version}"
    )
    return 0


def _set_status(args: argparse.Namespace) -> int:
    model_dir: Path = args.model_dir or default_model_dir()
    try:
        entry = Registry(model_dir).set_status(args.name, args.version, args.status)
    except EdgeAppError as exc:
        return _fail(exc)
    print(f"{entry.ref}: {entry.status}")
    return 0


def registry_rows(model_dir: Path) -> list[dict[str, Any]]:
    """The registry's entries as JSON (``models list --json``'s ``registry``)."""
    return [e.model_dump(mode="json") for e in Registry(model_dir).entries()]


def print_registry(rows: list[dict[str, Any]]) -> None:
    """The registry table of ``models list``."""
    if not rows:
        print("registry: empty (edge-app models add FILE --name NAME --version VERSION)")
        return
    print(f"{'REGISTERED':<28} {'VERSION':<12} {'STATUS':<9} {'FORMAT':<16} {'SIZE':>9}  CREATED")
    for row in rows:
        size = f"{row['bytes'] / 1e6:.1f} MB"
        fmt = row["conventions"].get("format") or "-"
        print(
            f"{row['name']:<28} {row['version']:<12} {row['status']:<9} {fmt:<16} {size:>9}  "
            f"{row['created']}"
        )
