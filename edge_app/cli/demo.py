"""``edge-app demo``: the whole story on a fresh machine, with no arguments.

The demo plays the cloud side too (broker, outage, audit), which is the simulator's job; this
module is the one place where edge_app reaches into ``simulator`` (see the import-linter
contract in pyproject.toml).
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="offline-then-reconnect demo on a generated clip with the real default model",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".demo"), help="where the clip, data and broker live"
    )
    parser.add_argument("--seconds", type=float, default=16.0, help="length of the generated clip")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    # imported on use: the simulator pulls in scikit-image, which the daemon never needs
    from simulator.demo import run_demo  # noqa: PLC0415

    return run_demo(args.workdir, seconds=args.seconds, as_json=args.json)
