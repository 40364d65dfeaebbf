"""The ``edge-app`` command. Each subcommand group lives in its own module with ``register``."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import sys
from collections.abc import Callable, Sequence

from edge_app.cli import config as config_cmd
from edge_app.cli import demo as demo_cmd
from edge_app.cli import detect as detect_cmd
from edge_app.cli import keys as keys_cmd
from edge_app.cli import models as models_cmd
from edge_app.cli import outbox as outbox_cmd
from edge_app.cli import run as run_cmd

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
_COMMANDS: tuple[Registrar, ...] = (
    run_cmd.register,
    detect_cmd.register,
    config_cmd.register,
    models_cmd.register,
    outbox_cmd.register,
    keys_cmd.register,
    demo_cmd.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-app",
        description="Offline-first edge computer-vision appliance.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # output piped into `head`: not an error
        return 0


if __name__ == "__main__":
    sys.exit(main())
