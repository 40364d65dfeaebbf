"""Label files: class id -> name. Two forms are understood, told apart by their content.

* **id form**: every non-blank line is ``<id> <name>``, ``<id>: <name>`` or ``<id>  <name>``
  (Coral's ``coco_labels.txt``: ``0  person``; ids may be sparse).
* **line form**: one name a line, the line number is the id. If the first line is ``???``
  (the TensorFlow Lite SSD ``labelmap.txt``), it is the background entry the post-processed
  outputs do not count, so class id ``c`` is line ``c + 1``.

``???`` anywhere else marks an unused id. Unknown ids are named ``class_<id>``.

**Embedded labels.** A TFLite model with metadata (the TensorFlow Lite Model Maker and task
library models) carries its associated files, the label map among them, in a zip archive
appended to the flatbuffer; the interpreter ignores the archive, ``zipfile`` opens it.
``embedded_labels`` reads the label file from there: the one ``.txt`` member, or, when there
are several, the first whose name contains ``label`` (``labelmap.txt``, ``labels.txt``).
``choose_labels`` applies the precedence the detector uses: an explicit file, then the
model's own labels, then the catalog's file, then none.
"""

from __future__ import annotations

__all__ = [
    "MAX_EMBEDDED_LABEL_BYTES",
    "LabelMap",
    "choose_labels",
    "embedded_labels",
    "load_labels",
    "parse_labels",
]

import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from edge_app.errors import ModelError

log = logging.getLogger("edge_app.vision")

MAX_EMBEDDED_LABEL_BYTES = 1 << 20
"""A label member larger than this (bytes) is not read: no label map is that big."""

_ID_LINE = re.compile(r"^\s*(\d+)\s*(?::\s*|\s)\s*(\S.*?)\s*$")
_UNUSED = "???"


@dataclass(frozen=True, slots=True)
class LabelMap:
    """Immutable class id -> name map. ``names`` holds only the ids the file names."""

    names: Mapping[int, str]
    _dense: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        frozen = MappingProxyType(dict(self.names))
        object.__setattr__(self, "names", frozen)
        size = max(frozen, default=-1) + 1
        dense = tuple(frozen.get(i, f"class_{i}") for i in range(size))
        object.__setattr__(self, "_dense", dense)

    @classmethod
    def empty(cls) -> LabelMap:
        """A map that knows no names: every id becomes ``class_<id>``."""
        return cls({})

    def __len__(self) -> int:
        return len(self.names)

    def name(self, class_id: int) -> str:
        """The name of ``class_id``, or ``class_<id>`` when the file does not name it."""
        if 0 <= class_id < len(self._dense):
            return self._dense[class_id]
        return f"class_{class_id}"

    def lookup(self, class_ids: NDArray[np.int32]) -> tuple[str, ...]:
        """Names of many ids at once (the detector's hot path: one list lookup per id)."""
        dense = self._dense
        n = len(dense)
        return tuple(dense[i] if 0 <= i < n else f"class_{i}" for i in class_ids.tolist())

    def ids(self, name: str) -> tuple[int, ...]:
        """Every id called ``name`` (usually one; empty if the name is unknown)."""
        return tuple(i for i, n in sorted(self.names.items()) if n == name)


def parse_labels(text: str, source: str = "<labels>") -> LabelMap:
    """Parse the text of a label file in either form (see the module docstring).

    ``source`` names the file in errors. Raises ``ModelError`` for an empty file or an id
    given twice.
    """
    lines = text.lstrip("\ufeff").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    content = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not content:
        raise ModelError(f"label file {source} has no labels; give one name a line")
    matches = [(n, _ID_LINE.match(line)) for n, line in content]
    if all(m is not None for _, m in matches):
        return _id_form(matches, source)
    return _line_form(lines)


def _id_form(matches: list[tuple[int, re.Match[str] | None]], source: str) -> LabelMap:
    names: dict[int, str] = {}
    for lineno, match in matches:
        assert match is not None  # checked by the caller
        class_id, name = int(match.group(1)), match.group(2)
        if class_id in names:
            raise ModelError(
                f"label file {source} line {lineno}: id {class_id} is given twice "
                f"({names[class_id]!r} and {name!r}); each id may appear once"
            )
        if name != _UNUSED:
            names[class_id] = name
    return LabelMap(names)


def _line_form(lines: list[str]) -> LabelMap:
    stripped = [line.strip() for line in lines]
    offset = 1 if stripped[0] == _UNUSED else 0
    return LabelMap(
        {
            i - offset: name
            for i, name in enumerate(stripped)
            if i >= offset and name and name != _UNUSED
        }
    )


def load_labels(path: Path) -> LabelMap:
    """Read and parse a label file (UTF-8). Raises ``ModelError`` naming the file on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read label file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ModelError(f"label file {path} is not UTF-8 text: {exc.reason}") from exc
    return parse_labels(text, str(path))


def embedded_labels(model_path: Path) -> tuple[LabelMap, str] | None:
    """The label map embedded in a TFLite model's metadata, with the member's name, or None
    when the model carries no archive or no label file in it (see the module docstring).

    Raises ``ModelError`` when the archive names a label file that cannot be used (too large,
    not UTF-8, empty, an id given twice): a model that ships wrong labels must not run with
    silently wrong names.
    """
    try:
        with zipfile.ZipFile(model_path) as archive:
            texts = [i for i in archive.infolist() if i.filename.lower().endswith(".txt")]
            labelish = [i for i in texts if "label" in i.filename.lower()]
            chosen = texts if len(texts) == 1 else labelish
            if not chosen:
                return None
            member = chosen[0]
            where = f"{model_path} (embedded {member.filename})"
            if member.file_size > MAX_EMBEDDED_LABEL_BYTES:
                raise ModelError(
                    f"label file {where} is {member.file_size} bytes, more than "
                    f"{MAX_EMBEDDED_LABEL_BYTES}; set detector.labels to a label file"
                )
            data = archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile):
        return None  # a plain flatbuffer: no metadata archive
    except OSError as exc:
        raise ModelError(f"cannot read model file {model_path}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(
            f"label file {where} is not UTF-8 text ({exc.reason}); set detector.labels to a "
            "label file"
        ) from exc
    return parse_labels(text, where), member.filename


def choose_labels(
    model_path: Path, explicit: Path | None = None, fallback: Path | None = None
) -> tuple[LabelMap, str]:
    """The labels to run ``model_path`` with, and where they came from.

    ``explicit`` (the config's or the command line's file) wins; then the labels embedded in
    the model; then ``fallback`` (the catalog's file for a known model); else an empty map.
    The source reads ``file <path>``, ``model metadata (<member>)``, ``manifest <path>`` or
    ``none``.
    """
    if explicit is not None:
        return load_labels(explicit), f"file {explicit}"
    embedded = embedded_labels(model_path)
    if embedded is not None:
        labels, member = embedded
        return labels, f"model metadata ({member})"
    if fallback is not None:
        return load_labels(fallback), f"manifest {fallback}"
    return LabelMap.empty(), "none"
