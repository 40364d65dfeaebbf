"""``python -m simulator certs DIR [--thing NAME ...]``: a test PKI for a trial broker.

One CA, a server certificate for ``localhost`` (and, with ``--server-name``, more DNS names,
such as the broker's service name in ``deploy/docker/compose.yaml``) and one client
certificate per thing, made by ``simulator.certs.make_pki`` (private keys 0600; existing valid
files are kept). For trials and demos only: the CA key sits beside the certificates.
"""

from __future__ import annotations

__all__ = ["main", "register"]

import argparse
import sys
from pathlib import Path

from simulator.certs import DEFAULT_THING, PkiError, make_pki


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "certs", help="make a test CA, a broker certificate and client certificates"
    )
    parser.add_argument("dir", type=Path, help="folder for the files (created if missing)")
    parser.add_argument(
        "--thing",
        action="append",
        metavar="NAME",
        help=f"a client certificate with CN=NAME (repeatable; default {DEFAULT_THING})",
    )
    parser.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="DNS",
        help="another DNS name of the broker's certificate besides localhost (repeatable)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    things: list[str] = args.thing or [DEFAULT_THING]
    try:
        for thing in things:
            pki = make_pki(args.dir, thing, server_names=tuple(args.server_name))
            print(f"{thing}: {pki.client_cert} {pki.client_key}")
    except PkiError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 2
    print(f"CA: {pki.ca}; broker: {pki.server_cert} {pki.server_key}")
    return 0
