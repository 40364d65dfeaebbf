"""``edge-app run --config FILE`` (or ``--config-env VAR``): the daemon."""

from __future__ import annotations

__all__ = ["register", "run_app"]

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from edge_app.app import EdgeApp
from edge_app.cli.configarg import add_config_options, load_config_arg
from edge_app.config import AppConfig
from edge_app.errors import ConfigError, EdgeAppError
from edge_app.logs import configure_logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("run", help="run the appliance (until SIGINT/SIGTERM or sources end)")
    add_config_options(parser)
    parser.set_defaults(func=_run)


def run_app(app: EdgeApp, stop: threading.Event) -> None:
    """Run ``app`` until ``stop`` is set or every source has ended, then stop it cleanly."""
    app.start()
    try:
        while not stop.is_set() and not app.wait(timeout=0.2):
            pass
    finally:
        app.stop()


def _run(args: argparse.Namespace) -> int:
    try:
        config: AppConfig = load_config_arg(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    configure_logging(config.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run_app(EdgeApp(config), stop)
    except EdgeAppError as exc:
        log.error("%s", exc)
        print(f"edge-app: {exc}", file=sys.stderr)
        return 2
    return 0
