"""Every module of the package and the simulator opens with a docstring saying what it is for:
the first thing a reader of a file meets, and what ``help()`` shows."""

from __future__ import annotations

import ast

from tests.docs.markdown import REPO


def test_every_module_has_a_docstring() -> None:
    modules = sorted(p for root in ("edge_app", "simulator") for p in (REPO / root).rglob("*.py"))
    assert len(modules) > 100  # the walk found the package
    bare = []
    for path in modules:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc or len(doc.split()) < 3:  # a word or two says nothing
            bare.append(str(path.relative_to(REPO)))
    assert bare == [], "modules without a docstring saying what they do and why"
