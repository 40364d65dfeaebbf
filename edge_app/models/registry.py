"""The local model registry: your own models, with versions, approval and lineage.

``<model dir>/registry.json`` lists the entries; each registered file is copied to
``<model dir>/registry/<name>-<version>.tflite`` (with its label file beside it), so the bytes
that were verified and approved are the bytes that run, whatever happens to the original.
A version is immutable: registering the same name and version twice is refused. An entry is
``pending`` when added; only ``approved`` entries may be chosen by remote config, and a
``rejected`` one is refused everywhere. A config names an entry ``NAME@VERSION``.

Every write replaces the index atomically (0600, ``edge_app.files``) under an exclusive lock
on ``registry.lock``, so two commands at once cannot lose an entry.
"""

from __future__ import annotations

__all__ = [
    "REGISTRY_FILE",
    "ModelStatus",
    "Registry",
    "RegistryEntry",
    "RemoteChoices",
    "check_tflite",
    "is_ref",
    "register_model",
    "source_digest",
    "split_ref",
]

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_app.errors import ChecksumMismatchError, ModelError, ModelNotFoundError
from edge_app.files import atomic_writer, private_dir, read_nofollow
from edge_app.models.catalog import sha256_file
from edge_app.models.conventions import Conventions

REGISTRY_FILE = "registry.json"
"""The index, in the model cache folder."""

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
_VERSION = r"^[A-Za-z0-9_.+-]{1,32}$"
_REF = re.compile(r"^([A-Za-z0-9_.-]{1,64})@([A-Za-z0-9_.+-]{1,32})$")
# Bytes 4..8 of every TFLite flatbuffer: the file identifier of its schema.
_TFLITE_ID = b"TFL3"


class ModelStatus(StrEnum):
    PENDING = "pending"
    """Registered, not yet reviewed: usable in a local config, not remotely."""
    APPROVED = "approved"
    """May be chosen by remote config (``detector.model: NAME@VERSION``)."""
    REJECTED = "rejected"
    """Refused everywhere; the entry stays for its lineage."""


class RegistryEntry(BaseModel):
    """One registered model version. ``lineage`` is JSON: what it was made from and how
    (``source``, ``conversion``, ``calibration``, ``agreement``; see docs/models.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Model name.")
    version: str = Field(pattern=_VERSION, description="Version, unique per name.")
    file: str = Field(pattern=r"^[A-Za-z0-9_.+-]{1,200}$", description="File in registry/.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")
    bytes: int = Field(gt=0, description="File size, bytes.")
    status: ModelStatus = Field(ModelStatus.PENDING, description="Review state.")
    created: str = Field(description="When it was registered, UTC ISO 8601.")
    status_changed: str | None = Field(None, description="When the status last changed.")
    conventions: Conventions = Field(
        default_factory=Conventions, description="Format, labels (file in registry/), input."
    )
    lineage: dict[str, Any] = Field(default_factory=dict, description="Where it came from.")

    @property
    def ref(self) -> str:
        """``NAME@VERSION``, as a config names it."""
        return f"{self.name}@{self.version}"


class _Index(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: Literal[1] = Field(1, alias="schema")
    models: list[RegistryEntry] = Field(default_factory=list)


def is_ref(text: str) -> bool:
    """Whether ``text`` reads as ``NAME@VERSION``."""
    return _REF.match(text) is not None


def split_ref(text: str) -> tuple[str, str]:
    """(name, version) of ``NAME@VERSION``; ``ValueError`` for anything else."""
    match = _REF.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not NAME@VERSION")
    return match.group(1), match.group(2)


def _utc(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Registry:
    """The registry in ``model_dir`` (the model cache). Reads the index on every call, so a
    long-running daemon sees approvals made meanwhile by ``edge-app models approve``."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / REGISTRY_FILE
        self.files = self.model_dir / "registry"

    def entries(self) -> tuple[RegistryEntry, ...]:
        """Every entry, in the order registered. Raises ``ModelError`` for a damaged index."""
        return tuple(self._read().models)

    def get(self, name: str, version: str) -> RegistryEntry:
        """The entry ``name@version``; ``ModelNotFoundError`` names the versions there are."""
        entries = self.entries()
        for entry in entries:
            if (entry.name, entry.version) == (name, version):
                return entry
        versions = [e.version for e in entries if e.name == name]
        known = f"versions of {name}: {', '.join(versions)}" if versions else "no such name"
        raise ModelNotFoundError(
            f"model {name}@{version} is not in the registry {self.path} ({known}); "
            "register it with: edge-app models add FILE --name NAME --version VERSION"
        )

    def approved_refs(self) -> tuple[str, ...]:
        """``NAME@VERSION`` of every approved entry (what remote config may choose)."""
        return tuple(e.ref for e in self.entries() if e.status is ModelStatus.APPROVED)

    def file_of(self, entry: RegistryEntry) -> Path:
        return self.files / entry.file

    def add(
        self,
        source: Path,
        name: str,
        version: str,
        *,
        sha256: str | None = None,
        conventions: Conventions | None = None,
        lineage: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> RegistryEntry:
        """Register a copy of the TFLite file ``source`` as ``name@version`` (pending).

        ``sha256`` (hex), if given, must match the file (a file verified elsewhere, e.g. a
        download). ``conventions.labels``, if set, is a label file copied beside the model.
        Raises ``ModelError``: not a TFLite file, digest mismatch, version already there.
        """
        if re.match(_NAME, name) is None:
            raise ModelError(f"model name {name!r}: use 1-64 letters, digits, '_', '.' or '-'")
        if re.match(_VERSION, version) is None:
            raise ModelError(f"version {version!r}: use 1-32 letters, digits, '_.+-'")
        source = Path(source)
        check_tflite(source)
        digest = sha256_file(source)
        if sha256 is not None and sha256.lower() != digest:
            raise ChecksumMismatchError(
                f"{source} has sha256 {digest}, expected {sha256.lower()}; nothing registered"
            )
        conventions = conventions or Conventions()
        try:
            private_dir(self.files)
            with self._locked():
                index = self._read()
                if any((e.name, e.version) == (name, version) for e in index.models):
                    raise ModelError(
                        f"{name}@{version} is already registered; versions never change: "
                        "register the new file under a new --version"
                    )
                stem = f"{name}-{version}"
                _copy(source, self.files / f"{stem}.tflite")
                if conventions.labels is not None:
                    labels = Path(conventions.labels)
                    _copy(labels, self.files / f"{stem}.labels.txt")
                    conventions = conventions.model_copy(update={"labels": f"{stem}.labels.txt"})
                entry = RegistryEntry(
                    name=name,
                    version=version,
                    file=f"{stem}.tflite",
                    sha256=digest,
                    bytes=source.stat().st_size,
                    created=_utc(time.time() if now is None else now),
                    conventions=conventions,
                    lineage=dict(lineage or {}),
                )
                index.models.append(entry)
                self._write(index)
        except OSError as exc:
            raise ModelError(
                f"cannot register {source} in {self.model_dir}: {exc.strerror or exc}"
            ) from exc
        return entry

    def set_status(
        self, name: str, version: str, status: ModelStatus, *, now: float | None = None
    ) -> RegistryEntry:
        """Approve or reject ``name@version``; returns the updated entry."""
        with self._locked():
            index = self._read()
            found = [i for i, e in enumerate(index.models) if e.ref == f"{name}@{version}"]
            if not found:
                self.get(name, version)  # raises, naming the versions there are
            changed = _utc(time.time() if now is None else now)
            entry = index.models[found[0]].model_copy(
                update={"status": status, "status_changed": changed}
            )
            index.models[found[0]] = entry
            try:
                self._write(index)
            except OSError as exc:
                raise ModelError(f"cannot write the registry {self.path}: {exc}") from exc
        return entry

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            private_dir(self.model_dir)
            fd = os.open(self.model_dir / "registry.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ModelError(f"cannot lock the registry in {self.model_dir}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> _Index:
        try:
            raw = read_nofollow(self.path)
        except FileNotFoundError:
            return _Index()
        except OSError as exc:
            raise ModelError(f"cannot read the model registry {self.path}: {exc}") from exc
        try:
            return _Index.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise ModelError(
                f"model registry {self.path} is damaged ({str(exc).splitlines()[0]}); "
                "restore it from a backup (the registered files are in "
                f"{self.files})"
            ) from exc

    def _write(self, index: _Index) -> None:
        doc = index.model_dump(mode="json", by_alias=True)
        with atomic_writer(self.path) as tmp:
            tmp.file.write(json.dumps(doc, indent=2).encode() + b"\n")


CONVERT_HINT = (
    "convert a SavedModel or Keras file first with: edge-app models convert SRC --out FILE.tflite"
)
"""What to do with a file that is not a TensorFlow Lite model, when a user gave it."""


def check_tflite(path: Path, *, hint: str = CONVERT_HINT) -> None:
    """``ModelError`` unless ``path`` is a readable TFLite flatbuffer (its ``TFL3`` file
    identifier); ``hint`` ends the message (what to do instead)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except IsADirectoryError as exc:
        raise ModelError(f"{path} is a folder; give a .tflite file") from exc
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read {path}: {exc.strerror}") from exc
    if head[4:8] != _TFLITE_ID:
        raise ModelError(
            f"{path.name} is not a TensorFlow Lite model (no TFL3 identifier)"
            + (f"; {hint}" if hint else "")
        )


def _copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, atomic_writer(target) as tmp:
        shutil.copyfileobj(src, tmp.file)


def source_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted), so a
    SavedModel folder has one digest. Raises ``ModelError`` if it cannot be read."""
    try:
        if path.is_file():
            return sha256_file(path)
        if not path.is_dir():
            raise ModelError(f"source model {path} does not exist")
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode() + b"\0")
            digest.update(bytes.fromhex(sha256_file(item)))
        return digest.hexdigest()
    except OSError as exc:
        raise ModelError(f"cannot read the source model {path}: {exc.strerror}") from exc


def register_model(
    model_dir: Path,
    file: Path,
    name: str,
    version: str,
    *,
    sha256: str | None = None,
    conventions: Conventions | None = None,
    lineage: dict[str, Any] | None = None,
) -> RegistryEntry:
    """Register ``file`` in the registry of ``model_dir`` (see ``Registry.add``): the
    programmatic ``edge-app models add``, for over-the-air updates and ``models convert``."""
    return Registry(model_dir).add(
        file, name, version, sha256=sha256, conventions=conventions, lineage=lineage
    )


class RemoteChoices(Collection[str]):
    """The models remote config may choose: the manifest's names and the registry's approved
    ``NAME@VERSION`` entries, read afresh on every question, so an approval (or a rejection)
    counts from the next shadow delta on, without a restart."""

    def __init__(self, manifest_names: Iterable[str], registry: Registry) -> None:
        self._names = tuple(manifest_names)
        self._registry = registry

    def __contains__(self, item: object) -> bool:
        if item in self._names:
            return True
        return isinstance(item, str) and is_ref(item) and item in self._registry.approved_refs()

    def __iter__(self) -> Iterator[str]:
        return iter((*self._names, *self._registry.approved_refs()))

    def __len__(self) -> int:
        return len(self._names) + len(self._registry.approved_refs())
