"""docs/configuration.md and docs/cli.md are generated (``python -m tools.gen_docs``): the
committed pages must be what the code gives, and must cover every field and option."""

from __future__ import annotations

import argparse
import re
import shutil
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from edge_app.cli import build_parser as edge_app_parser
from edge_app.config.remote import RemoteOverlay
from edge_app.config.schema import AppConfig
from simulator.__main__ import build_parser as simulator_parser
from tests.docs.markdown import DOCS, REPO
from tools.gen_docs import PAGES, main, stale_pages
from tools.markdown import cell


def test_the_generated_pages_are_current() -> None:
    stale = stale_pages()
    assert not stale, f"{stale} differ from the code: run python -m tools.gen_docs"


def test_a_hand_edited_or_missing_page_is_reported_stale(tmp_path: Path) -> None:
    for name in PAGES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    assert stale_pages(tmp_path) == []
    config = tmp_path / "docs" / "configuration.md"
    config.write_text(config.read_text().replace("| `uplink.port` |", "| `uplink.porty` |"))
    (tmp_path / "docs" / "cli.md").unlink()
    assert stale_pages(tmp_path) == ["docs/configuration.md", "docs/cli.md"]


def test_check_mode_writes_nothing_and_says_what_to_run(
    capsys: Any,
) -> None:
    before = {name: (REPO / name).read_bytes() for name in PAGES}
    assert main(["--check"]) == 0
    assert {name: (REPO / name).read_bytes() for name in PAGES} == before
    assert capsys.readouterr().err == ""


def _rows(page: str) -> dict[str, list[str]]:
    """First cell (a code span) -> the row's cells, for every table row of ``page``."""
    rows = {}
    for line in (DOCS / page).read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def _fields(model: type[BaseModel]) -> set[tuple[str, str]]:
    """(model name, field name) of ``model`` and every model below it, from its JSON Schema
    (pydantic's own walk, not the generator's)."""
    schema = model.model_json_schema()
    defs = {model.__name__: schema, **schema.get("$defs", {})}
    return {(name, field) for name, d in defs.items() for field in d.get("properties", {})}


def test_every_schema_field_has_a_row() -> None:
    rows = _rows("configuration.md")
    last = {path.removesuffix("[]").rsplit(".", 1)[-1] for path in rows}
    missing = sorted((m, f) for m, f in _fields(AppConfig) if f not in last)
    assert not missing, f"no row for {missing}"
    assert len(rows) >= len({f for _, f in _fields(AppConfig)})


def _overlay_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """The schema paths a desired document can set, walked from the overlay models
    themselves (not from REMOTE_FIELDS, which the generator reads)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        inner = info.annotation
        if get_origin(inner) in (Union, types.UnionType):
            inner = next(a for a in get_args(inner) if a is not type(None))
        if get_origin(inner) is dict:  # cameras, by name: a list in the schema
            out |= _overlay_paths(get_args(inner)[1], f"{path}[]")
        elif (
            isinstance(inner, type) and issubclass(inner, BaseModel) and "Remote" in inner.__name__
        ):
            out |= _overlay_paths(inner, path)
        else:
            out.add(path)  # a value, or a whole list (rules) that replaces the local one
    return out


def test_the_remote_column_matches_the_overlay_models() -> None:
    settable = _overlay_paths(RemoteOverlay)
    assert {"detector.score_threshold", "cameras[].fps", "rules"} <= settable
    wrong = {}
    for path, cells in _rows("configuration.md").items():
        bare = path.removesuffix("[]")
        whole = any(bare == s or bare.startswith((s + ".", s + "[]")) for s in settable)
        below = any(s.startswith((bare + ".", bare + "[]")) for s in settable)
        expected = "yes" if whole else "partly" if below else "no"
        if cells[4] != expected:
            wrong[path] = (cells[4], expected)
    assert not wrong, f"remote column (shown, expected): {wrong}"
    rows = _rows("configuration.md")
    assert rows["uplink.tls.key"][4] == "no"
    assert rows["encryption.key_file"][4] == "no"


def _commands(
    parser: argparse.ArgumentParser,
) -> list[tuple[argparse.ArgumentParser, list[str]]]:
    out = [(parser, [s for a in parser._actions for s in a.option_strings if s != "-h"])]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _commands(sub)
    return out


def test_every_command_and_option_is_in_the_cli_page() -> None:
    page = (DOCS / "cli.md").read_text()
    sections = re.split(r"^#{2,4} ", page, flags=re.MULTILINE)
    by_prog = {s.split("\n", 1)[0].strip("`"): s for s in sections}
    for parser in (edge_app_parser(), simulator_parser()):
        for command, options in _commands(parser):
            assert command.prog in by_prog, f"no section for {command.prog}"
            section = by_prog[command.prog]
            missing = [o for o in options if o != "--help" and o not in section]
            assert not missing, f"{command.prog}: options missing from docs/cli.md: {missing}"


def test_table_cells_escape_pipes_and_tags_but_not_code() -> None:
    assert cell("a | b") == "a \\| b"
    assert cell("in <data_dir>/x, 1 < 2") == "in \\<data_dir>/x, 1 < 2"
    assert cell("`Bearer <token>`") == "`Bearer <token>`"
    assert cell("one\n  line") == "one line"
