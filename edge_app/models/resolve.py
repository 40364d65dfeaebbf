"""Which file a model setting means: a manifest name, a registry ``NAME@VERSION`` or a path.

The answer carries what is needed to load the file the way it was made to be fed: its
digest, label file, catalog or registry entry, and conventions (the registry entry's, or the
sidecar ``FILE.tflite.yaml`` of a path; ``edge_app.models.conventions``).
"""

from __future__ import annotations

__all__ = ["ResolvedModel", "resolve_model"]

from dataclasses import dataclass
from pathlib import Path

from edge_app.errors import ChecksumMismatchError, ModelError, ModelNotFoundError
from edge_app.models.catalog import (
    Catalog,
    ModelSpec,
    default_model_dir,
    load_manifest,
    sha256_file,
)
from edge_app.models.conventions import Conventions, read_sidecar
from edge_app.models.registry import ModelStatus, Registry, RegistryEntry, is_ref, split_ref


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model file on disk, ready to load: its path, digest, the catalog's label file,
    catalog or registry entry, and conventions (None: the format's defaults; their ``labels``
    is an absolute path).

    ``labels`` is None for a file the catalog does not know.
    """

    path: Path
    sha256: str
    labels: Path | None
    spec: ModelSpec | None
    entry: RegistryEntry | None = None
    conventions: Conventions | None = None

    @property
    def name(self) -> str:
        """The manifest or registry name, or the file's stem for a model nothing describes."""
        if self.entry is not None:
            return self.entry.name
        return self.spec.name if self.spec is not None else self.path.stem

    @property
    def version(self) -> str | None:
        """The registry version; None for manifest models and plain files."""
        return self.entry.version if self.entry is not None else None


def resolve_model(
    name_or_path: str, model_dir: Path | None = None, catalog: Catalog | None = None
) -> ResolvedModel:
    """Find the model file for a manifest name, a registry ``NAME@VERSION`` or a path to a
    ``.tflite`` file.

    A name is looked up in ``model_dir`` (default ``default_model_dir()``) and its sha256
    checked; a registry entry likewise (a rejected one is refused); a path is hashed and
    matched against the catalog so known files get their labels, and its sidecar is read.
    Raises ``ModelNotFoundError`` (not pulled yet: says which command pulls it; missing path
    or entry), ``ChecksumMismatchError`` (a cached file was altered) or ``ModelError``.
    """
    catalog = catalog or load_manifest()
    model_dir = model_dir or default_model_dir()
    if name_or_path in catalog.names:
        spec = catalog.get(name_or_path)
        path = model_dir / spec.file
        if not path.is_file():
            raise ModelNotFoundError(
                f"model {spec.name!r} is not pulled yet (looked for {path}); "
                f"run: edge-app models pull {spec.name}"
            )
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise ChecksumMismatchError(
                f"{path} has sha256 {digest}, the manifest expects {spec.sha256} for "
                f"{spec.name!r}; run: edge-app models pull {spec.name} (it replaces the file)"
            )
        return ResolvedModel(path, digest, catalog.labels_path(spec), spec)
    path = Path(name_or_path).expanduser()
    if not path.exists() and is_ref(name_or_path):
        return _registered(Registry(model_dir), *split_ref(name_or_path))
    if not path.exists():
        if path.suffix == "" and len(path.parts) == 1:
            raise ModelNotFoundError(
                f"{name_or_path!r} is neither a known model ({', '.join(catalog.names)}), "
                "a registered NAME@VERSION nor an existing file; give a manifest name, "
                "a registry entry (edge-app models list) or a path to a .tflite file"
            )
        raise ModelNotFoundError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelNotFoundError(f"model path {path} is not a file; give a .tflite file")
    digest = sha256_file(path)
    known = catalog.find_sha256(digest)
    conventions = read_sidecar(path)
    labels = catalog.labels_path(known) if known is not None else None
    return ResolvedModel(path.resolve(), digest, labels, known, conventions=conventions)


def _registered(registry: Registry, name: str, version: str) -> ResolvedModel:
    entry = registry.get(name, version)
    if entry.status is ModelStatus.REJECTED:
        raise ModelError(
            f"model {entry.ref} is rejected in the registry; approve it "
            f"(edge-app models approve {name} {version}) or choose another version"
        )
    path = registry.file_of(entry)
    if not path.is_file():
        raise ModelNotFoundError(
            f"the file of {entry.ref} is missing ({path}); register the model again "
            "under a new version"
        )
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ChecksumMismatchError(
            f"{path} has sha256 {digest}, the registry expects {entry.sha256} for "
            f"{entry.ref}; the file was altered: register the model again under a new version"
        )
    conventions = entry.conventions
    if conventions.labels is not None:
        conventions = conventions.model_copy(
            update={"labels": str(registry.files / conventions.labels)}
        )
    return ResolvedModel(path, digest, None, None, entry=entry, conventions=conventions)
