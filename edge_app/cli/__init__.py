"""The ``edge-app`` command. Each subcommand group lives in its own module with ``register``.

Everything the command prints, to stdout or stderr, goes through ``edge_app.redact``: argument
errors, error lines, summaries, the daemon's log lines and the demo's output alike.
"""

from __future__ import annotations

__all__ = ["build_parser", "main"]

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from edge_app.cli import anomaly as anomaly_cmd
from edge_app.cli import aws as aws_cmd
from edge_app.cli import config as config_cmd
from edge_app.cli import demo as demo_cmd
from edge_app.cli import detect as detect_cmd
from edge_app.cli import fleet as fleet_cmd
from edge_app.cli import health as health_cmd
from edge_app.cli import install as install_cmd
from edge_app.cli import keys as keys_cmd
from edge_app.cli import models as models_cmd
from edge_app.cli import outbox as outbox_cmd
from edge_app.cli import review as review_cmd
from edge_app.cli import run as run_cmd
from edge_app.redact import redacted_output

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
_COMMANDS: tuple[Registrar, ...] = (
    run_cmd.register,
    health_cmd.register,
    detect_cmd.register,
    config_cmd.register,
    models_cmd.register,
    anomaly_cmd.register,
    outbox_cmd.register,
    review_cmd.register,
    keys_cmd.register,
    aws_cmd.register,
    fleet_cmd.register,
    install_cmd.register,
    demo_cmd.register,
)


def build_parser(commands: Sequence[Registrar] = _COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-app",
        description="Offline-first edge computer-vision appliance.",
        epilog="Everything edge-app prints hides secrets: PEM blocks, and in URLs the "
        "user:password@, every query value and the fragment. Exit code 70: an unexpected "
        "error (a bug), reported with its traceback.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in commands:
        register(sub)
    return parser


EXIT_BUG = 70
"""Exit code of an unexpected error (a bug; sysexits' EX_SOFTWARE)."""


def main(argv: Sequence[str] | None = None, commands: Sequence[Registrar] = _COMMANDS) -> int:
    """Entry point of the console script; returns the process exit code. ``commands`` are
    the subcommand registrars (a seam for tests)."""
    with redacted_output():
        return _main(argv, commands)


def _main(argv: Sequence[str] | None, commands: Sequence[Registrar]) -> int:
    args = build_parser(commands).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # output piped into `head`: not an error
        return 0
    except Exception:
        # Printed here, not by the interpreter after main() returns, so that the traceback
        # goes through the redaction like every other line.
        print("edge-app: internal error (a bug; please report it):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
