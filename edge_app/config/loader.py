"""Load a YAML file into a validated ``AppConfig``; errors name each field by its path."""

from __future__ import annotations

__all__ = ["error_path", "field_errors", "load_config", "parse_config"]

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edge_app.config.schema import AppConfig
from edge_app.errors import ConfigError, FieldError


def error_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a dotted field path, e.g. ``cameras.0.source``."""
    return ".".join(str(p) for p in loc)


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Every error of a pydantic validation, named by its field path."""
    return [FieldError(error_path(err["loc"]), err["msg"]) for err in exc.errors()]


def parse_config(doc: Any, source: str = "<document>", base_dir: Path | None = None) -> AppConfig:
    """Validate a parsed document. Relative paths are resolved against ``base_dir`` if given."""
    if not isinstance(doc, dict):
        raise ConfigError(source, [FieldError("", "the document must be a mapping (key: value)")])
    try:
        config = AppConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(source, field_errors(exc)) from exc
    return _resolve_paths(config, base_dir) if base_dir is not None else config


def load_config(path: Path | str) -> AppConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [FieldError("", f"cannot read file: {exc.strerror}")]) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [FieldError("", f"not valid YAML{where}: {problem}")]) from exc
    return parse_config(doc, str(path), path.resolve().parent)


def _resolve_paths(model: Any, base: Path) -> Any:
    """A copy of ``model`` with every relative ``Path`` field made absolute against ``base``."""
    if isinstance(model, BaseModel):
        updates = {
            name: _resolve_paths(getattr(model, name), base) for name in type(model).model_fields
        }
        return model.model_copy(update=updates)
    if isinstance(model, Path):
        expanded = model.expanduser()
        return expanded if expanded.is_absolute() else base / expanded
    if isinstance(model, list):
        return [_resolve_paths(item, base) for item in model]
    return model
