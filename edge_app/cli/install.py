"""``edge-app install --systemd``: install the daemon as a systemd service.

Run as root (``sudo``) on the device, from any edge-app installation (a checkout's venv, a
pipx install): it makes its own venv under ``--prefix`` from ``--package``. ``--dry-run``
prints the plan and changes nothing; ``--root DIR`` applies it under DIR instead of ``/``:
an OS image's root file system (users go into its own etc/passwd) or a folder to look at first
(no users, no ownership); never systemctl.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import os
import sys
from pathlib import Path, PurePosixPath

from edge_app.errors import ConfigError, InstallError
from edge_app.install import DEFAULT_PREFIX, SystemdInstall, Target, next_steps, plan


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "install",
        help="install edge-app as a system service (user, venv, config, state dir, unit)",
        description="Install edge-app as a systemd service: the user edge-app (group video), "
        "a venv under --prefix with --package and the default model (sha256 verified), "
        "/etc/edge-app/config.yaml (0640 root:edge-app; never overwritten), "
        "/var/lib/edge-app (0700) and /etc/systemd/system/edge-app.service. The service is "
        "not started. Every step is idempotent: run it again after fixing a failure.",
    )
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--systemd", action="store_true", help="install as a systemd service")
    parser.add_argument(
        "--package",
        required=True,
        metavar="SPEC",
        help="what pip installs into the venv: a wheel file, optionally with extras "
        "('dist/edge_app-0.1.0-py3-none-any.whl[encryption]'), or a requirement "
        "('edge-app[aws]==0.1.0' from your index)",
    )
    parser.add_argument(
        "--prefix",
        type=PurePosixPath,
        default=DEFAULT_PREFIX,
        help=f"folder of the venv and the models (default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration to install as /etc/edge-app/config.yaml, validated first "
        "(default: the example, to edit); an installed one is never overwritten",
    )
    parser.add_argument(
        "--at-rest-key",
        action="store_true",
        help="make /etc/edge-app/at-rest.key (0600 root; kept if it exists) and hand it to "
        "the service as the systemd credential at-rest (encryption.credential: at-rest)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="apply the plan under DIR instead of /: users and ownership in DIR's own "
        "etc/passwd if it has one (an OS image), else files and folders only; never systemctl",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    parser.set_defaults(func=_install)


def _fail(message: str) -> int:
    print(f"edge-app install: error: {message}", file=sys.stderr)
    return 2


def _install(args: argparse.Namespace) -> int:
    try:
        spec = SystemdInstall(args.package, args.prefix, args.config, at_rest_key=args.at_rest_key)
    except ValueError as exc:
        return _fail(str(exc))
    target = Target(args.root.resolve())
    if target.system and not args.dry_run and os.geteuid() != 0:
        return _fail("run it as root (sudo), or look first with --dry-run or --root DIR")
    try:
        steps, config = plan(spec, target)
    except ConfigError as exc:
        return _fail(f"{exc}\nfix the configuration and run the install again")
    except InstallError as exc:
        return _fail(str(exc))
    where = "" if target.system else f" under {target.root}"
    if args.dry_run:
        print(f"edge-app install --systemd{where}: the plan (dry run: nothing is changed)")
        for n, step in enumerate(steps, 1):
            print(f"  {n}. {step.describe()}")
    else:
        print(f"edge-app install --systemd{where}:")
        for n, step in enumerate(steps, 1):
            print(f"  {n}. {step.describe()}", flush=True)
            try:
                outcome = step.apply(target)
            except InstallError as exc:
                return _fail(f"step {n}: {exc}")
            print(f"     {outcome}", flush=True)
    print("then:")
    for line in next_steps(spec, config):
        print(f"  - {line}")
    return 0
