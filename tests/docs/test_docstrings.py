"""Every module of the package and the simulator opens with a docstring saying what it is for:
the first thing a reader of a file meets, and what ``help()`` shows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.docs.markdown import REPO

MODULES = sorted(p for root in ("edge_app", "simulator") for p in (REPO / root).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(REPO)) for p in MODULES])
def test_the_module_has_a_docstring(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc, f"{path.relative_to(REPO)} has no module docstring: say what it does and why"
    assert len(doc.split()) >= 3, f"{path.relative_to(REPO)}: a one-word docstring says nothing"
