"""The README is the on-ramp and docs/ the reference: links resolve, the index lists every
page, nothing points outside the repository, and what the pages quote (configs, tests,
scripts, files, layers) exists and works."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from edge_app.config.loader import parse_config
from tests.docs.markdown import (
    DOCS,
    REPO,
    anchors,
    code_spans,
    fenced,
    links,
    pages,
    prose,
)

PAGES = pages()
IDS = [str(p.relative_to(REPO)) for p in PAGES]


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        resolved = (page.parent / name).resolve() if name else page
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: {resolved.name} has no heading #{anchor}")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


def test_the_index_lists_every_page_in_docs_and_the_readme_links_it() -> None:
    listed = {(DOCS / target.partition("#")[0]).resolve() for target in links(DOCS / "index.md")}
    missing = [
        p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md" and p not in listed
    ]
    assert not missing, f"add these pages to docs/index.md: {missing}"
    assert "docs/index.md" in set(links(REPO / "README.md"))


def test_the_readme_stays_an_on_ramp() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move reference text to docs/"
    for command in ("make demo", "make test"):
        assert any(line.startswith(command) for line in lines), command


# What the repository must never present to a reader as if they had it.
_OUTSIDE = re.compile(r"DESIGN\.md|STYLE\.md|\bissues? \d+|\.\./shared\b", re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_nothing_points_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    if page == DOCS / "testing.md":  # the one developer note on the real-world test data
        text = text.replace("../shared/realworld", "")
    found = sorted({m.group(0) for m in _OUTSIDE.finditer(text)})
    assert not found, f"{page.relative_to(REPO)} refers to {found}, which the repository lacks"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_config_shown_is_valid(page: Path, tmp_path: Path) -> None:
    """A YAML block holding a whole config (``device`` and ``cameras``) validates as it is."""
    for block in fenced(page.read_text(encoding="utf-8"), "yaml"):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and {"device", "cameras"} <= doc.keys():
            parse_config(doc, f"{page.name} yaml block", base_dir=tmp_path)


_PATH = re.compile(r"^(?:edge_app|simulator|bench|tests|tools|deploy|models|docs)/[\w./-]*$")


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_repository_path_quoted_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    quoted = {word for span in code_spans(text) for word in span.split()}
    quoted |= set(re.findall(r"(?<![\w/.])tests/[\w/]+\.py(?:::\w+)?", prose(text)))
    missing = []
    for word in sorted(quoted):
        path, _, test = word.strip("(),;").partition("::")
        if not _PATH.match(path):
            continue
        if not (REPO / path).exists():
            missing.append(path)
        elif test and not re.search(rf"^def {test}\(", (REPO / path).read_text(), re.MULTILINE):
            missing.append(word)
    assert not missing, f"{page.relative_to(REPO)} quotes what does not exist: {missing}"


def _pytest_commands(text: str) -> list[list[str]]:
    return [
        shlex.split(span)
        for span in code_spans(text)
        if re.match(r"^(\S+=\S+ )*(\.venv/bin/)?pytest ", span)
        and "<" not in span  # <name>: a placeholder
    ]


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_pytest_command_selects_something(page: Path) -> None:
    """``pytest FILE -k EXPR``: each word of EXPR names something in FILE (a test, a case)."""
    empty = []
    for argv in _pytest_commands(page.read_text(encoding="utf-8")):
        files = [a.partition("::")[0] for a in argv if a.startswith("tests/")]
        expr = argv[argv.index("-k") + 1] if "-k" in argv else ""
        words = [w for w in re.findall(r"\w+", expr) if w not in {"and", "or", "not"}]
        texts = " ".join((REPO / f).read_text().lower() for f in files if (REPO / f).is_file())
        empty += [f"{shlex.join(argv)}: {w!r}" for w in words if w.lower() not in texts]
    assert not empty, f"{page.relative_to(REPO)}: -k selects nothing: {empty}"


def test_the_architecture_page_lists_the_layers_lint_imports_enforces() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    [contract] = [
        c for c in pyproject["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    spans = code_spans(page)
    missing = [layer for layer in contract["layers"] if layer not in spans]
    assert not missing, f"docs/architecture.md lacks the layers {missing}"
    assert spans.index(contract["layers"][0]) < spans.index(contract["layers"][-1])
