"""``python -m simulator SUBCOMMAND ...``: one entry point for the simulator's tools.

Each subcommand is a module with ``register(subparsers) -> None`` (adds its parser) and
``main(args) -> int`` (runs it, returns the exit code). Adding a subcommand is one line in
``SUBCOMMANDS``; modules are imported only when chosen, so ``scene``'s scikit-image import does
not slow down the others.
"""

from __future__ import annotations

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from edge_app.redact import redacted_output


class Subcommand(Protocol):
    """What a subcommand module provides."""

    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add this subcommand's parser (named like its ``SUBCOMMANDS`` key)."""

    def main(self, args: argparse.Namespace) -> int:
        """Run with parsed ``args``; return the process exit code."""


# name -> module implementing it
SUBCOMMANDS: dict[str, str] = {
    "scene": "simulator.scene",
    "replay": "simulator.replay",
    "cloud": "simulator.cloud",
    "shadow": "simulator.shadow_cli",
    "jobs": "simulator.jobs_cli",
    "outage": "simulator.outage",
    "certs": "simulator.certs_cli",
    "fleet": "simulator.fleetsim_cli",
}


def _load(module: str) -> Subcommand:
    return cast(Subcommand, importlib.import_module(module))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen subcommand. Everything
    it prints goes through ``edge_app.redact``, as for ``edge-app``."""
    with redacted_output():
        return _main(list(sys.argv[1:] if argv is None else argv))


def build_parser(names: Sequence[str] = tuple(SUBCOMMANDS)) -> argparse.ArgumentParser:
    """The ``python -m simulator`` parser with the subcommands ``names`` (their modules are
    imported here); the CLI reference in ``docs/cli.md`` is generated from it."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="edge_app simulator tools"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in names:
        _load(SUBCOMMANDS[name]).register(subparsers)
    return parser


def _main(argv: list[str]) -> int:
    # Only the chosen subcommand's module is imported: its name is the first non-option word.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([chosen] if chosen in SUBCOMMANDS else list(SUBCOMMANDS))
    args = parser.parse_args(argv)
    return _load(SUBCOMMANDS[args.command]).main(args)


if __name__ == "__main__":
    sys.exit(main())
