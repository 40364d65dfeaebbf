"""Model catalog (``models/manifest.yaml``), local registry, local model cache and verified
pulls."""

from edge_app.models.catalog import (
    Catalog,
    ModelSpec,
    NpmSource,
    UrlSource,
    default_manifest_path,
    default_model_dir,
    load_manifest,
    sha256_file,
)
from edge_app.models.conventions import Conventions, read_sidecar, sidecar_path, write_sidecar
from edge_app.models.pull import ProgressFn, pull
from edge_app.models.registry import (
    ModelStatus,
    Registry,
    RegistryEntry,
    RemoteChoices,
    is_ref,
    register_model,
    source_digest,
    split_ref,
)
from edge_app.models.resolve import ResolvedModel, resolve_model

__all__ = [
    "Catalog",
    "Conventions",
    "ModelSpec",
    "ModelStatus",
    "NpmSource",
    "ProgressFn",
    "Registry",
    "RegistryEntry",
    "RemoteChoices",
    "ResolvedModel",
    "UrlSource",
    "default_manifest_path",
    "default_model_dir",
    "is_ref",
    "load_manifest",
    "pull",
    "read_sidecar",
    "register_model",
    "resolve_model",
    "sha256_file",
    "sidecar_path",
    "source_digest",
    "split_ref",
    "write_sidecar",
]
