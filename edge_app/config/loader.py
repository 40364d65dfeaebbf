"""Load a YAML file into a validated ``AppConfig``; errors name each field by its path.

The file is read as strict UTF-8 and parsed with ``StrictLoader``: PyYAML's safe loader, but
a mapping key given twice is an error (PyYAML keeps the last one silently) and nesting deeper
than ``MAX_NESTING`` levels is refused before PyYAML's recursive composer runs out of stack.
"""

from __future__ import annotations

__all__ = [
    "MAX_NESTING",
    "StrictLoader",
    "error_path",
    "field_error",
    "field_errors",
    "load_config",
    "load_config_env",
    "parse_config",
    "read_yaml",
]

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge_app.config.base import FieldCheckError
from edge_app.config.schema import AppConfig
from edge_app.errors import ConfigError, FieldError

MAX_NESTING = 32
"""Deepest nesting of mappings and lists accepted in a config file (the schema needs 6)."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys and deep nesting, each with a
    ``yaml.MarkedYAMLError`` that says where (line and column). One loader per document."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # The composer recurses once per level: count levels here, before the stack does.
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_NESTING} levels; a config needs far fewer",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges: keys given here override those, by design
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.get(key)
            except TypeError:
                continue  # unhashable: the base class refuses it with its own message
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given at line {seen.line + 1}); "
                    "keep one of them",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def error_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a dotted field path, e.g. ``cameras.0.source``. A key
    that is empty or holds ``.`` or ``[`` (a remote camera named ``..``) is written
    ``["key"]`` (JSON-quoted), so the path stays unambiguous: ``cameras[".."].fps``."""
    path = ""
    for part in loc:
        text = str(part)
        if isinstance(part, str) and (not text or "." in text or "[" in text):
            path += f"[{json.dumps(text)}]"
        else:
            path += f".{text}" if path else text
    return path


def field_error(err: ErrorDetails) -> FieldError:
    """One pydantic error as a ``FieldError``: a ``FieldCheckError`` raised by a model's own
    check moves the location down to the field it names; NaN and inf are called what they
    are (pydantic's message would quote the field's bounds)."""
    loc, message = err["loc"], err["msg"]
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldCheckError):
        loc, message = (*loc, *cause.path), cause.message
    elif isinstance(cause, ValueError):
        message = str(cause)  # our own validators' text, without pydantic's "Value error, "
    elif err["type"] == "finite_number":
        message = f"must be a finite number, not {err['input']!r}"
    return FieldError(error_path(loc), message)


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Every error of a pydantic validation, named by its field path."""
    return [field_error(err) for err in exc.errors()]


def parse_config(doc: Any, source: str = "<document>", base_dir: Path | None = None) -> AppConfig:
    """Validate a parsed document. Relative paths are resolved against ``base_dir`` if given."""
    if not isinstance(doc, dict):
        raise ConfigError(source, [FieldError("", "the document must be a mapping (key: value)")])
    try:
        config = AppConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(source, field_errors(exc)) from exc
    if base_dir is None:
        return config
    try:
        resolved: AppConfig = _resolve_paths(config, base_dir, ())
    except FieldCheckError as exc:
        raise ConfigError(source, [FieldError(error_path(exc.path), exc.message)]) from exc
    return resolved


def read_yaml(data: bytes, source: str) -> Any:
    """Parse one YAML document from UTF-8 ``data`` (a leading BOM is allowed) with
    ``StrictLoader``. Raises ``ConfigError`` naming ``source`` and the line of the problem."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        why = (
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column} "
            "cannot be decoded; save the file as UTF-8"
        )
        raise ConfigError(source, [FieldError("", why)]) from exc
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [FieldError("", f"not valid YAML{where}: {problem}")]) from exc
    finally:
        loader.dispose()


def load_config(path: Path | str) -> AppConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        why = f"cannot read file: {exc.strerror}"
        if path.is_dir():
            why = "is a directory; give the path of a YAML config file"
        raise ConfigError(str(path), [FieldError("", why)]) from exc
    return parse_config(read_yaml(data, str(path)), str(path), path.resolve().parent)


def load_config_env(name: str, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate the config held by the environment variable ``name`` (``environ``,
    default ``os.environ``): YAML text, or JSON, which is YAML too (a Greengrass component's
    ``{configuration:/config}`` interpolation gives JSON). Relative paths are resolved
    against the current directory (a Greengrass component's work folder). Raises
    ``ConfigError`` naming ``$name`` when it is unset, empty or invalid."""
    source = f"${name}"
    text = (os.environ if environ is None else environ).get(name, "")
    if not text.strip():
        why = (
            "is not set or empty: put the configuration document (YAML or JSON) in it, "
            "or give a file with --config"
        )
        raise ConfigError(source, [FieldError("", why)])
    # surrogateescape: the bytes the OS gave, so read_yaml reports an undecodable one
    data = text.encode("utf-8", "surrogateescape")
    return parse_config(read_yaml(data, source), source, Path.cwd())


def _resolve_paths(model: Any, base: Path, loc: tuple[str | int, ...]) -> Any:
    """A copy of ``model`` with every relative ``Path`` field made absolute against ``base``;
    ``loc`` is where ``model`` sits in the config (for the error of a bad ``~user``)."""
    if isinstance(model, BaseModel):
        updates = {
            name: _resolve_paths(getattr(model, name), base, (*loc, name))
            for name in type(model).model_fields
        }
        return model.model_copy(update=updates)
    if isinstance(model, Path):
        try:
            expanded = model.expanduser()
        except RuntimeError as exc:  # "~someone" with no such user
            raise FieldCheckError(loc, f"{model}: {exc} (no such user?)") from exc
        return expanded if expanded.is_absolute() else base / expanded
    if isinstance(model, list):
        return [_resolve_paths(item, base, (*loc, i)) for i, item in enumerate(model)]
    return model
