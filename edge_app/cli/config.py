"""``edge-app config validate FILE``, ``config show FILE`` and ``config schema``."""

from __future__ import annotations

__all__ = ["register"]

import argparse
import json
import sys

import yaml

from edge_app.config import (
    AppConfig,
    ConfigSnapshot,
    LastGoodStore,
    effective_config,
    load_config,
)
from edge_app.errors import ConfigError, ModelError
from edge_app.models import load_manifest


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "config", help="validate or show a config file, or print the configuration's JSON Schema"
    )
    cmds = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    validate = cmds.add_parser("validate", help="check a YAML config; exit 1 if it is invalid")
    validate.add_argument("file", help="YAML configuration file")
    validate.set_defaults(func=_validate)
    show = cmds.add_parser(
        "show", help="print the configuration and where it comes from (file, last-good, remote)"
    )
    show.add_argument("file", help="YAML configuration file")
    show.add_argument(
        "--effective",
        action="store_true",
        help="with the last-good remote overlay from data_dir laid over it (what `run` uses)",
    )
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=_show)
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


def _show(args: argparse.Namespace) -> int:
    """The local file, or (``--effective``) the file plus the last-good overlay: exactly what
    ``edge-app run`` starts with and, once applied, what a remote change left in force."""
    try:
        local = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    snapshot = ConfigSnapshot.of(local, "file", None)
    if args.effective:
        try:
            models = load_manifest().names
        except ModelError as exc:
            print(f"edge-app: {exc}", file=sys.stderr)
            return 2
        config, last = effective_config(local, LastGoodStore(local.device.data_dir), models)
        if last is not None:
            snapshot = ConfigSnapshot.of(config, "last-good", last.version)
    doc = {
        "source": snapshot.source,
        "remote_version": snapshot.remote_version,
        "digest": snapshot.digest,
        "config": snapshot.config.model_dump(mode="json"),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    version = "none" if snapshot.remote_version is None else f"v{snapshot.remote_version}"
    print(f"# source: {snapshot.source} ({args.file}); remote version: {version}")
    print(f"# digest: {snapshot.digest}")
    print(yaml.safe_dump(doc["config"], sort_keys=False), end="")
    return 0
