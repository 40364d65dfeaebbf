"""Reading the repository's Markdown for the documentation tests: pages, links, code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`]+`")  # may wrap across lines, as Markdown allows
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)


def pages() -> list[Path]:
    """Every hand-written or generated Markdown page the repository presents to a reader."""
    return [REPO / "README.md", REPO / "models" / "README.md", *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """``text`` without fenced blocks and code spans (links inside code are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(path: Path) -> Iterator[str]:
    """Targets of the Markdown links in ``path``, as written."""
    yield from _LINK.findall(prose(path.read_text(encoding="utf-8")))


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of ``path``: lower case, punctuation dropped,
    spaces as hyphens; a repeated heading gets ``-1``, ``-2``..."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the fenced blocks of ``language`` in ``text``."""
    pattern = re.compile(rf"^```{re.escape(language)}\n(.*?)^```", re.MULTILINE | re.DOTALL)
    return pattern.findall(text)


def code_spans(text: str) -> list[str]:
    """Every inline code span's text (fenced blocks left out)."""
    return [" ".join(span[1:-1].split()) for span in _CODE_SPAN.findall(_FENCE.sub("", text))]
