"""Small Markdown helpers shared by the generated reference pages."""

from __future__ import annotations

__all__ = ["cell", "code", "table"]

import re
from collections.abc import Iterable, Sequence

_CODE_SPAN = re.compile(r"(`[^`]*`)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # what Markdown would take for an HTML tag


def code(text: str) -> str:
    """``text`` as an inline code span (backticks inside are doubled around)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def cell(text: str) -> str:
    """``text`` made safe inside a table cell: one line, ``|`` escaped (GitHub splits cells on
    it even inside code spans), and a ``<`` that starts a tag escaped outside code spans, so
    that ``<data_dir>`` is shown instead of being taken for HTML."""
    parts = _CODE_SPAN.split(" ".join(text.split()))
    safe = [part if part.startswith("`") else _TAG_START.sub(r"\\<", part) for part in parts]
    return "".join(safe).replace("|", "\\|")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A GitHub table as lines; cells are passed through ``cell``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines
