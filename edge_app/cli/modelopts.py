"""Command-line options that say how a model is fed: ``--format`` and the preprocessing.

Shared by ``detect``, ``models add`` and ``models convert``, so each option has one name and
one help text. Unset options stay None: the model's sidecar or registry entry decides, then
the format's reference defaults (docs/models.md).
"""

from __future__ import annotations

__all__ = ["add_convention_options", "conventions_from_args", "merged"]

import argparse
from pathlib import Path

from edge_app.models import Conventions
from edge_app.vision import DECODERS

_FIELDS = ("format", "resize", "pad_value", "letterbox_align", "channel_order", "input_range")


def _grey(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must lie in 0..255, got {text}")
    return value


def add_convention_options(parser: argparse.ArgumentParser, *, labels: bool = True) -> None:
    """Add ``--format``, ``--resize``, ``--pad-value``, ``--letterbox-align``,
    ``--channel-order``, ``--input-range`` (and ``--labels`` unless ``labels`` is False)."""
    group = parser.add_argument_group(
        "model conventions",
        "how the model is fed; unset: the model's sidecar (FILE.tflite.yaml) or registry "
        "entry, else the format's reference defaults",
    )
    group.add_argument(
        "--format", choices=sorted(DECODERS), help="output format (default: from the tensors)"
    )
    if labels:
        group.add_argument(
            "--labels",
            type=Path,
            help="label file (default: the model's sidecar or embedded labels, else the "
            "manifest's)",
        )
    group.add_argument("--resize", choices=("stretch", "letterbox"), help="frame -> input resize")
    group.add_argument("--pad-value", type=_grey, help="letterbox padding grey level, 0..255")
    group.add_argument(
        "--letterbox-align", choices=("center", "top_left"), help="where the letterbox sits"
    )
    group.add_argument("--channel-order", choices=("rgb", "bgr"), help="input channel order")
    group.add_argument(
        "--input-range", choices=("-1..1", "0..1", "0..255"), help="float inputs' scaling"
    )


def conventions_from_args(args: argparse.Namespace) -> Conventions:
    """The conventions the options set (unset ones None)."""
    fields = {name: getattr(args, name, None) for name in _FIELDS}
    labels = getattr(args, "labels", None)
    if labels is not None:
        fields["labels"] = str(Path(labels).resolve())
    return Conventions(**{k: v for k, v in fields.items() if v is not None})


def merged(base: Conventions | None, override: Conventions) -> Conventions:
    """``base`` with every field ``override`` sets replaced."""
    doc = base.model_dump(exclude_none=True) if base is not None else {}
    doc.update(override.model_dump(exclude_none=True))
    return Conventions(**doc)
