"""Write the generated reference pages: ``python -m tools.gen_docs`` (``--check``: only say
which are stale, exit 1 if any).

``docs/configuration.md`` comes from the pydantic schema, ``docs/cli.md`` from the argparse
parsers; ``tests/docs/test_generated.py`` fails when the committed pages differ from what
this writes. Output is deterministic: the same code gives the same bytes.
"""

from __future__ import annotations

__all__ = ["PAGES", "REPO_ROOT", "main", "stale_pages"]

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.cli_reference import render_cli
from tools.config_reference import render_configuration

REPO_ROOT = Path(__file__).resolve().parents[1]

PAGES: dict[str, Callable[[], str]] = {
    "docs/configuration.md": render_configuration,
    "docs/cli.md": render_cli,
}
"""Generated page (path relative to the repository) -> the function that renders it."""


def stale_pages(root: Path = REPO_ROOT) -> list[str]:
    """The generated pages whose committed text under ``root`` differs from a fresh render."""
    stale = []
    for name, render in PAGES.items():
        path = root / name
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != render():
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.gen_docs",
        description="Write docs/configuration.md and docs/cli.md from the code.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a page is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for name in stale:
            print(f"{name} is stale: run python -m tools.gen_docs", file=sys.stderr)
        return 1 if stale else 0
    for name, render in PAGES.items():
        path = REPO_ROOT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render()
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
