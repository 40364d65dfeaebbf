"""``edge-app config validate FILE`` and ``edge-app config schema``."""

from __future__ import annotations

__all__ = ["register"]

import argparse
import json
import sys

from edge_app.config import AppConfig, load_config
from edge_app.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("config", help="validate a config file or print its JSON Schema")
    cmds = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    validate = cmds.add_parser("validate", help="check a YAML config; exit 1 if it is invalid")
    validate.add_argument("file", help="YAML configuration file")
    validate.set_defaults(func=_validate)
    schema = cmds.add_parser("schema", help="print the configuration's JSON Schema")
    schema.set_defaults(func=_schema)


def _validate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{exc.source}: {len(exc.errors)} error(s)", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    print(
        f"{args.file}: ok (device {config.device.thing_name}, {len(config.cameras)} camera(s), "
        f"{len(config.rules)} rule(s), version {config.version})"
    )
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(AppConfig.model_json_schema(), indent=2))
    return 0
