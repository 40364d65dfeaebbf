"""Where a command reads its configuration: ``--config FILE`` or ``--config-env VAR``.

``--config-env`` is for platforms that hand a component its configuration rather than a file:
a Greengrass v2 component's recipe puts ``{configuration:/config}`` (its configuration object
as JSON) into an environment variable, and the daemon reads it from there
(``deploy/greengrass/recipe.yaml``).
"""

from __future__ import annotations

__all__ = ["add_config_options", "config_source", "load_config_arg"]

import argparse

from edge_app.config import AppConfig, load_config, load_config_env

CONFIG_ENV_HELP = (
    "environment variable holding the configuration document (YAML or JSON), e.g. a "
    "Greengrass component's configuration; relative paths are resolved against the "
    "current directory"
)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and ``--config-env VAR``; exactly one of them is required."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file")
    group.add_argument("--config-env", metavar="VAR", help=CONFIG_ENV_HELP)


def load_config_arg(args: argparse.Namespace) -> AppConfig:
    """The validated config named by ``args`` (from ``add_config_options``); ``ConfigError``
    naming the file or ``$VAR`` when it cannot be read or is invalid."""
    if args.config_env is not None:
        return load_config_env(args.config_env)
    return load_config(args.config)


def config_source(args: argparse.Namespace) -> str:
    """The file or ``$VAR`` the config comes from, for messages."""
    return f"${args.config_env}" if args.config_env is not None else str(args.config)
