"""``edge-app keys generate FILE`` and ``keys check FILE``: the key for encryption at rest."""

from __future__ import annotations

__all__ = ["register"]

import argparse
import sys
from pathlib import Path

from edge_app.atrest import generate_key_file, key_id, read_key_file
from edge_app.errors import EncryptionError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "keys", help="make or check the key of encryption at rest (encryption.key_file)"
    )
    cmds = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = cmds.add_parser(
        "generate",
        help="write a new random 256-bit key to FILE (base64, mode 0600); never overwrites",
    )
    generate.add_argument("file", type=Path, help="key file to create; it must not exist")
    generate.set_defaults(func=_generate)
    check = cmds.add_parser(
        "check", help="check that FILE holds a key edge-app accepts; print its key id"
    )
    check.add_argument("file", type=Path, help="key file to check")
    check.set_defaults(func=_check)


def _generate(args: argparse.Namespace) -> int:
    try:
        kid = generate_key_file(args.file)
    except EncryptionError as exc:
        print(f"edge-app keys: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote a new key to {args.file} (mode 0600, key id {kid}); set encryption.key_file "
        "to it and keep a copy somewhere safe: what it encrypts cannot be read without it"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        key = read_key_file(args.file)
    except EncryptionError as exc:
        print(f"edge-app keys: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok, key id {key_id(key)}")
    return 0
