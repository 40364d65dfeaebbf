"""``docs/cli.md``: every command and subcommand of ``edge-app`` and ``python -m simulator``,
generated from their argparse parsers.

The page is rendered from the parsers' actions, not from ``format_help()``, whose layout
depends on the terminal width; usage lines are formatted at a fixed width. An argument
without help text is an error: the reference would have nothing to say about it.
"""

from __future__ import annotations

__all__ = ["render_cli"]

import argparse
import functools
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

from edge_app.cli import build_parser as edge_app_parser
from simulator.__main__ import build_parser as simulator_parser
from tools.markdown import code, table

_WIDTH = 96  # usage lines, whatever the terminal of whoever generates the page

_INTRO = """\
# Command-line reference

Generated from the argparse parsers (`edge_app/cli/`, `simulator/`) by
`python -m tools.gen_docs`; do not edit it by hand (a test fails when it is stale). Every
command also prints its help with `-h`.

`edge-app` is the appliance's command; `python -m simulator` holds the tools that play the
world around it in tests, the demo and the benchmarks (scenes, replays, outages, the cloud
side, the shadow service).
"""


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    """Format ``parser``'s usage at ``_WIDTH`` columns, keeping its formatter class."""
    formatter: Any = parser.formatter_class  # a HelpFormatter subclass; typeshed hides `width`
    parser.formatter_class = functools.partial(formatter, width=_WIDTH)


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of each subcommand of ``parser``, in the order registered."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        name = str(action.metavar)
    elif action.option_strings:
        name = action.dest.upper()
    else:
        name = action.dest
    if action.choices is not None and action.metavar is None:
        name = "{" + ",".join(str(c) for c in action.choices) + "}"
    nargs = action.nargs
    if nargs == argparse.OPTIONAL:
        return f"[{name}]"
    if nargs == argparse.ONE_OR_MORE:
        return f"{name} [{name} ...]"
    if nargs == argparse.ZERO_OR_MORE:
        return f"[{name} ...]"
    return name


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return _metavar(action)
    flags = ", ".join(action.option_strings)
    return flags if action.nargs == 0 else f"{flags} {_metavar(action)}"


def _default(action: argparse.Action) -> str:
    value = action.default
    if action.nargs == 0 or value in (None, argparse.SUPPRESS):
        return ""
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, tuple):  # e.g. a parsed WIDTHxHEIGHT
        value = "x".join(str(v) for v in value)
    return code(str(value))


def _notes(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    for group in parser._mutually_exclusive_groups:
        if action in group._group_actions:
            others = " / ".join(max(a.option_strings, key=len) for a in group._group_actions)
            return f"one of {others}" + (" (required)" if group.required else "")
    return "required" if action.required and action.option_strings else ""


def _arguments(parser: argparse.ArgumentParser, prog: str) -> list[list[str]]:
    rows: list[list[str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if not action.help:
            raise ValueError(f"{prog}: argument {_invocation(action)!r} has no help text")
        rows.append(
            [code(_invocation(action)), _default(action), _notes(parser, action), action.help]
        )
    return rows


def _text(text: str, formatter: type[argparse.HelpFormatter] | object) -> list[str]:
    """A description or epilog as Markdown: preformatted ones (``RawDescriptionHelpFormatter``)
    in a text block, others as one paragraph."""
    if isinstance(formatter, type) and issubclass(formatter, argparse.RawDescriptionHelpFormatter):
        return ["```text", text.strip("\n"), "```", ""]
    return [" ".join(text.split()), ""]


def _command(parser: argparse.ArgumentParser, summary: str, level: int) -> list[str]:
    formatter_class = parser.formatter_class
    _fixed_width(parser)
    prog = parser.prog
    lines = [f"{'#' * level} `{prog}`", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ("" if summary.endswith(".") else "."), ""]
    if parser.description and parser.description != summary:
        lines += _text(parser.description, formatter_class)
    # argparse indents continuation lines under the "usage: " it prints first
    first, *rest = parser.format_usage().removeprefix("usage: ").rstrip("\n").split("\n")
    usage = "\n".join([first, *(line.removeprefix(" " * len("usage: ")) for line in rest)])
    lines += ["```text", usage, "```", ""]
    rows = _arguments(parser, prog)
    if rows:
        lines += [*table(("argument", "default", "notes", "description"), rows), ""]
    subcommands = list(_subcommands(parser))
    if subcommands:
        rows = [[code(f"{prog} {name}"), text] for name, text, _ in subcommands]
        lines += [*table(("command", "what it does"), rows), ""]
    if parser.epilog:
        lines += _text(parser.epilog, formatter_class)
    for _, text, sub in subcommands:
        lines += _command(sub, text, min(level + 1, 4))
    return lines


def render_cli() -> str:
    """The whole page, deterministic for a given Python version (argparse formats usage)."""
    lines = [_INTRO]
    for parser in (edge_app_parser(), simulator_parser()):
        lines += _command(parser, "", 2)
    return "\n".join(lines).rstrip("\n") + "\n"
