"""Hypothesis strategies for config documents, built from the schema itself.

``documents(model)`` walks a pydantic model's fields (types, bounds, patterns) and draws
mappings of its real keys: in-bounds values mostly, so that a good share of documents is
valid, and with ``junk=True`` also wrong types, NaN/inf, huge numbers, odd strings (dots,
slashes, wildcards, NUL, bidi controls), unknown keys and nesting deep enough to be refused.
Names come from a small pool, so rules can refer to cameras and zones that exist.

Importing this module imports every module of the project first (``load_project_modules``):
Hypothesis mixes into its draws constants it finds in the project's modules loaded so far, so
without it a derandomized test draws other examples alone than in the full suite.
"""

from __future__ import annotations

import enum
import functools
import importlib
import math
import pkgutil
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types as at
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

import edge_app
import simulator


def load_project_modules() -> None:
    """Import every module of ``edge_app`` and ``simulator`` (not their ``__main__``).

    Hypothesis draws, now and then, a literal found in the local modules in ``sys.modules``
    at the time (hypothesis.internal.conjecture.providers, "local constants"); which modules
    those are depends on what else the session imported. The full suite once drew a delta
    sequence that the module alone never did, so a failure in CI did not reproduce with
    ``pytest tests/config/test_input_properties.py``. With every module loaded first, the pool,
    and so the examples of a derandomized run, are the same in every selection of tests.
    """
    for package in (edge_app, simulator):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith(".__main__"):  # runs the CLI when imported
                importlib.import_module(info.name)


load_project_modules()

NAMES = ["a", "b", "dock", "gate", "yard"]
ODD_TEXT = [
    "",
    ".",
    "..",
    "a/b",
    "..\\x",
    "+",
    "#",
    "a\0b",
    "\u202egnp.exe",
    "Zürich",
    "🙂",
    "x" * 300,
    "{thing}",
    "$aws",
    "-----BEGIN PRIVATE KEY-----",
    "~no-such-user/x",
]
REFERENCES = frozenset({"name", "camera", "zone", "zones", "rules"})  # fields holding names
T = typing.TypeVar("T")


def _deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def junk() -> st.SearchStrategy[Any]:
    """A value of any shape, often a wrong one."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from([0, -1, 2**31, 10**30, -(10**30)]),
        st.integers(),
        st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
        st.floats(),
        st.sampled_from(ODD_TEXT),
        st.text(max_size=12),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=4),
        st.dictionaries(st.sampled_from([*NAMES, "x", "type"]), scalars, max_size=3),
        st.integers(20, 60).map(_deep),  # past the loader's nesting limit from 32 on
    )


def _bounded(meta: list[Any], kind: type) -> st.SearchStrategy[Any]:
    lo: float | None = None
    hi: float | None = None
    lo_open = hi_open = False
    for m in meta:
        if isinstance(m, at.Ge):
            lo = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, at.Gt):
            lo, lo_open = float(m.gt), True  # type: ignore[arg-type]
        elif isinstance(m, at.Le):
            hi = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, at.Lt):
            hi, hi_open = float(m.lt), True  # type: ignore[arg-type]
    if kind is int:
        low = -5 if lo is None else int(lo) + (1 if lo_open else 0)
        high = max(low, 10**9) if hi is None else int(hi) - (1 if hi_open else 0)
        return st.integers(low, high)
    return st.floats(
        -1e6 if lo is None else lo,
        max(lo or 0.0, 1e6) if hi is None else hi,
        exclude_min=lo_open,
        exclude_max=hi_open,
        allow_nan=False,
    )


def _pattern(meta: list[Any]) -> str | None:
    for m in meta:
        pattern = getattr(m, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    return None


def _strings(name: str, meta: list[Any], with_junk: bool) -> st.SearchStrategy[str]:
    pattern = _pattern(meta)
    if name in REFERENCES:
        base: st.SearchStrategy[str] = st.sampled_from(NAMES)
    elif pattern is not None:
        base = st.from_regex(pattern, fullmatch=True)
    else:
        base = st.text(st.characters(codec="utf-8"), max_size=16)
    return st.one_of(base, st.sampled_from(ODD_TEXT)) if with_junk else base


def values(annotation: Any, name: str, meta: list[Any], with_junk: bool) -> st.SearchStrategy[Any]:
    """Values for a field of type ``annotation`` named ``name`` with constraints ``meta``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        extra = [m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        return values(args[0], name, meta + extra, with_junk)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(values(a, name, meta, with_junk) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        items = values(args[0], name, [], with_junk)
        return st.lists(
            items, min_size=1 if any(isinstance(m, at.MinLen) for m in meta) else 0, max_size=3
        )
    if origin is tuple:
        return st.tuples(*(values(a, name, [], with_junk) for a in args)).map(list)
    if origin is dict:
        return st.dictionaries(
            st.sampled_from(NAMES), values(args[1], name, [], with_junk), max_size=2
        )
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return documents(annotation, with_junk)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from([member.value for member in annotation])
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation in (int, float):
        return _bounded(meta, annotation)
    if annotation is str:
        return _strings(name, meta, with_junk)
    if annotation is Path:
        return st.sampled_from(["clip.mp4", "/tmp/edge", "data", "~/x", "a b/c.mp4"])
    raise TypeError(f"no strategy for {annotation!r} ({name})")


def _maybe_junk(strategy: st.SearchStrategy[T], with_junk: bool) -> st.SearchStrategy[Any]:
    # one draw in eight is junk: most documents then carry one or two bad values
    return st.one_of(*([strategy] * 7), junk()) if with_junk else strategy


@functools.cache
def _field_strategies(model: type[BaseModel], with_junk: bool) -> dict[str, st.SearchStrategy[Any]]:
    return {
        name: _maybe_junk(
            values(field.annotation, name, list(field.metadata), with_junk), with_junk
        )
        for name, field in model.model_fields.items()
    }


@st.composite
def _document(draw: st.DrawFn, model: type[BaseModel], with_junk: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    strategies = _field_strategies(model, with_junk)
    for name, field in model.model_fields.items():
        # the discriminator `type` is always given: without it every union member fails
        present = field.is_required() or name == "type"
        if present and with_junk:
            present = draw(st.integers(0, 19)) > 0  # rarely leave out a required field
        elif not present:
            present = draw(st.integers(0, 2)) == 0  # a third of the optional fields
        if present:
            doc[name] = draw(strategies[name])
    if with_junk and draw(st.integers(0, 9)) == 0:
        doc[draw(st.sampled_from(["bogus", "Name", "camera", "tls"]))] = draw(junk())
    return doc


def documents(model: type[BaseModel], with_junk: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings of ``model``'s keys (see the module docstring)."""
    return _document(model, with_junk)
