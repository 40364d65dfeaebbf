"""``docs/configuration.md``: every field of ``AppConfig``, generated from the pydantic schema.

One table per section, in the order the schema declares them (depth first). A row gives the
field's dotted path (``[]`` marks a list item), its type, default, bounds, whether the named
shadow may set it (``edge_app.config.remote.REMOTE_FIELDS``) and its description. A field
without a description is an error: the schema promises every field is described.
"""

from __future__ import annotations

__all__ = ["render_configuration"]

import enum
import json
import types
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from edge_app.config.base import Point
from edge_app.config.remote import REMOTE_FIELDS
from edge_app.config.schema import AppConfig
from tools.markdown import code, table

_INTRO = """\
# Configuration reference

Generated from the pydantic schema in `edge_app/config/` by `python -m tools.gen_docs`; do not
edit it by hand (a test fails when it is stale). How a file is loaded and checked, and a worked
example: [config-guide.md](config-guide.md). What the cloud may change:
[remote-config.md](remote-config.md).

Every section refuses unknown keys, numbers must be finite (no NaN or infinity), and no string
or path may contain NUL. Relative paths are resolved against the config file's folder. In the
tables, `[]` stands for "each item of the list" (`cameras[].fps` is the `fps` of every camera);
**remote** says whether the named shadow `edge-config` may set the field (*partly*: some of the
fields below it).
"""

_HEADER = ("field", "type", "default", "bounds", "remote", "description")


@dataclass(frozen=True)
class _Section:
    """One table: the models whose fields it lists, under a dotted path."""

    path: str
    model: type[BaseModel]
    title: str
    description: str


def _remote_paths() -> tuple[str, ...]:
    # REMOTE_FIELDS names cameras by name (the overlay is keyed by camera name); the schema
    # keeps them in a list, written "cameras[]" here.
    return tuple(p.replace(".<name>", "[]") for p in REMOTE_FIELDS)


def _remote(path: str, remote: tuple[str, ...]) -> str:
    if any(path == r or path.startswith((r + ".", r + "[]")) for r in remote):
        return "yes"
    if any(r.startswith((path + ".", path + "[]")) for r in remote):
        return "partly"
    return "no"


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """``annotation`` without ``Annotated`` wrappers, and the metadata they carried."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata.extend(extra)
    return annotation, metadata


def _optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(annotation, False)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field holds: itself, its list items or its union's variants."""
    annotation, _ = _optional(_strip(annotation)[0])
    if get_origin(annotation) is list:
        return _models(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _models(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _is_list(annotation: Any) -> bool:
    return get_origin(_optional(_strip(annotation)[0])[0]) is list


def _number(value: object) -> str:
    return json.dumps(value)


def _count(n: int, of: str) -> str:
    return f"{n} {of}{'' if n == 1 else 's'}" if of else str(n)


def _bounds(metadata: list[Any], of: str = "") -> list[str]:
    out: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            out += _bounds(item.metadata, of)
        elif isinstance(item, at.Ge):
            out.append(f">= {_number(item.ge)}")
        elif isinstance(item, at.Gt):
            out.append(f"> {_number(item.gt)}")
        elif isinstance(item, at.Le):
            out.append(f"<= {_number(item.le)}")
        elif isinstance(item, at.Lt):
            out.append(f"< {_number(item.lt)}")
        elif isinstance(item, at.MinLen):
            out.append(f"at least {_count(item.min_length, of)}")
        elif isinstance(item, at.MaxLen):
            out.append(f"at most {_count(item.max_length, of)}")
        elif getattr(item, "pattern", None):
            out.append(f"pattern {code(item.pattern)}")
    return out


_SCALARS = {bool: "bool", int: "integer", float: "number", str: "string"}


def _type(annotation: Any) -> str:
    """How a field's type reads in the table: ``number or null``, ``list of sections``..."""
    annotation, metadata = _strip(annotation)
    if annotation == Point:
        return "point [x, y], each 0..1"
    inner, optional = _optional(annotation)
    if optional:
        return f"{_type(inner)} or null"
    bounds = _bounds(metadata)
    suffix = f" ({', '.join(bounds)})" if bounds else ""
    if get_origin(annotation) is not None:
        return _generic(annotation) + suffix
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " / ".join(code(str(m.value)) for m in annotation)
    return _scalar(annotation) + suffix


def _scalar(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "path"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"no rendering for the annotation {annotation!r}")


def _generic(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " / ".join(code(str(a)) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(_type(a) for a in args) + "]"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    if origin in (Union, types.UnionType):
        variants = _models(annotation)
        if len(variants) == len(args):  # config sections told apart by their `type`
            kinds = " / ".join(code(m.model_fields["type"].default) for m in variants)
            return f"section, by `type`: {kinds}"
        return " or ".join(_type(a) for a in args)
    raise TypeError(f"no rendering for the annotation {annotation!r}")


def _value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return value


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "its defaults"
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    plain = _value(value)
    if isinstance(plain, str) and plain:
        return code(plain)
    return code(json.dumps(plain))


def _field_bounds(info: FieldInfo) -> str:
    annotation, metadata = _strip(info.annotation)
    inner = _optional(annotation)[0]
    base = _strip(inner)[0]
    of = ""
    if get_origin(base) is list:
        of = "item"
    elif base is str:
        of = "character"
    return ", ".join(_bounds([*metadata, *_strip(inner)[1], *info.metadata], of))


def _sections(path: str, model: type[BaseModel], title: str, description: str) -> list[_Section]:
    """``model``'s table and, depth first, those of the sections below it."""
    out = [_Section(path, model, title, description)]
    for name, info in model.model_fields.items():
        children = _models(info.annotation)
        below = f"{path}.{name}" if path else name
        below += "[]" if _is_list(info.annotation) else ""
        for child in children:
            title = code(below)
            if len(children) > 1:  # a union chosen by its `type` field
                kind = child.model_fields["type"].default
                title += f" with `type: {kind}`"
            out += _sections(below, child, title, info.description or "")
    return out


def _rows(section: _Section, remote: tuple[str, ...]) -> list[list[str]]:
    rows: list[list[str]] = []
    for name, info in section.model.model_fields.items():
        path = f"{section.path}.{name}" if section.path else name
        if not info.description:
            raise ValueError(f"{section.model.__name__}.{name} has no description")
        kind = _type(info.annotation)
        if kind.endswith("section") and _is_list(info.annotation):
            kind = kind.replace("section", "sections")
        items = "[]" if _is_list(info.annotation) and _models(info.annotation) else ""
        rows.append(
            [
                code(path + items),
                kind,
                _default(info),
                _field_bounds(info),
                _remote(path, remote),
                info.description,
            ]
        )
    return rows


def _check_remote(sections: list[_Section], remote: tuple[str, ...]) -> None:
    """Every remotely settable path must exist in the schema (else the column would lie)."""
    known = {
        f"{s.path}.{name}" if s.path else name for s in sections for name in s.model.model_fields
    }
    missing = [r for r in remote if r not in known]
    if missing:
        raise ValueError(f"REMOTE_FIELDS names paths the schema lacks: {missing}")


def render_configuration() -> str:
    """The whole page, deterministic: same schema, same bytes."""
    sections = _sections("", AppConfig, "Top level", AppConfig.__doc__ or "")
    remote = _remote_paths()
    _check_remote(sections, remote)
    lines = [_INTRO]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.description:
            lines += [section.description, ""]
        lines += [*table(_HEADER, _rows(section, remote)), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
