"""A model's conventions: its output format, labels and preprocessing, carried with the file.

A ``.tflite`` file does not say whether it wants RGB or BGR, pixels 0..1 or 0..255, or where
its letterbox sits; a model fed the wrong way loads fine and detects nothing. So the
conventions travel with the model: in a sidecar ``FILE.tflite.yaml`` next to the file, or in
its registry entry (``edge_app.models.registry``). Every field is optional: what is left out
is the format's reference default (``edge_app.vision.preprocess.default_options``), and a
field set in the config's ``detector`` section wins over both.
"""

from __future__ import annotations

__all__ = ["SIDECAR_SUFFIX", "Conventions", "read_sidecar", "sidecar_path", "write_sidecar"]

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_app.errors import ModelError
from edge_app.files import read_nofollow, write_atomic

SIDECAR_SUFFIX = ".yaml"
"""A sidecar is the model's file name with this appended: ``det.tflite.yaml``."""

_MAX_SIDECAR_BYTES = 64 * 1024


class Conventions(BaseModel):
    """How a model is fed and read; None: the format's reference default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]{1,64}$",
        description="Output format (ssd_postprocess, yolov5, yolov8, yolox).",
    )
    labels: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Label file; a relative path is relative to the sidecar's folder.",
    )
    resize: Literal["stretch", "letterbox"] | None = Field(None, description="Frame -> input.")
    pad_value: int | None = Field(None, ge=0, le=255, description="Letterbox grey level.")
    letterbox_align: Literal["center", "top_left"] | None = Field(
        None, description="Where the letterboxed image sits in the input."
    )
    channel_order: Literal["rgb", "bgr"] | None = Field(None, description="Input channel order.")
    input_range: Literal["-1..1", "0..1", "0..255"] | None = Field(
        None, description="Float inputs' pixel scaling."
    )

    def preprocess(self) -> dict[str, Any]:
        """The set preprocessing fields, named as ``PreprocessOptions`` names them."""
        fields = {
            "resize": self.resize,
            "pad_value": self.pad_value,
            "align": self.letterbox_align,
            "channel_order": self.channel_order,
            "input_range": self.input_range,
        }
        return {k: v for k, v in fields.items() if v is not None}


def sidecar_path(model: Path) -> Path:
    """``model``'s sidecar: the same path with ``.yaml`` appended."""
    return model.with_name(model.name + SIDECAR_SUFFIX)


def read_sidecar(model: Path) -> Conventions | None:
    """The conventions in ``model``'s sidecar, None if there is none. A relative ``labels``
    comes back absolute. Raises ``ModelError`` naming the file and each bad field."""
    path = sidecar_path(model)
    if not path.exists():
        return None
    try:
        raw = read_nofollow(path)
    except OSError as exc:
        raise ModelError(f"cannot read the model's sidecar {path}: {exc.strerror}") from exc
    if len(raw) > _MAX_SIDECAR_BYTES:
        raise ModelError(f"sidecar {path} is {len(raw)} bytes; at most {_MAX_SIDECAR_BYTES}")
    try:
        doc = yaml.safe_load(raw.decode("utf-8")) or {}
        conventions = Conventions.model_validate(doc)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"sidecar {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        lines = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ModelError(
            f"sidecar {path} is invalid: {lines}; fix it (fields: docs/models.md) or "
            "remove it to use the format's defaults"
        ) from exc
    if conventions.labels is not None and not Path(conventions.labels).is_absolute():
        labels = str(path.parent / conventions.labels)
        conventions = conventions.model_copy(update={"labels": labels})
    return conventions


def write_sidecar(model: Path, conventions: Conventions) -> Path:
    """Write ``conventions`` as ``model``'s sidecar (atomically, 0600); returns its path.
    Raises ``ModelError`` if the folder is not writable."""
    path = sidecar_path(model)
    text = yaml.safe_dump(conventions.model_dump(exclude_none=True), sort_keys=False)
    header = "# edge-app model conventions (docs/models.md); unset fields: the format's defaults\n"
    try:
        write_atomic(path, (header + text).encode())
    except OSError as exc:
        raise ModelError(f"cannot write the sidecar {path}: {exc.strerror}") from exc
    return path
