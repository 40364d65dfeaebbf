"""Model catalog (``models/manifest.yaml``), local model cache and verified pulls."""

from edge_app.models.catalog import (
    Catalog,
    ModelSpec,
    NpmSource,
    ResolvedModel,
    UrlSource,
    default_manifest_path,
    default_model_dir,
    load_manifest,
    resolve_model,
    sha256_file,
)
from edge_app.models.pull import ProgressFn, pull

__all__ = [
    "Catalog",
    "ModelSpec",
    "NpmSource",
    "ProgressFn",
    "ResolvedModel",
    "UrlSource",
    "default_manifest_path",
    "default_model_dir",
    "load_manifest",
    "pull",
    "resolve_model",
    "sha256_file",
]
