"""``edge-app outbox status|peek|export|salvage``: what is stored and not yet delivered.

``status``, ``peek`` and ``export`` are read-only (``OutboxReader``): safe to run while the
daemon is delivering, and they write and create nothing beside the file (no -wal/-shm), so they
also work in a read-only folder. ``peek`` and ``export`` decrypt encrypted events with
``--key FILE`` or the key of ``--config``'s ``encryption`` section; without a key (or with
another one) they say so and print nothing. The key itself is never printed.

``salvage`` writes: it copies a damaged file's events into the outbox, which must not be in
use. Encrypted bodies are copied as the bytes they are (no key needed), and decrypt as before.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from edge_app.atrest import Sealer, load_sealer
from edge_app.config import AppConfig, load_config
from edge_app.domain import format_utc
from edge_app.errors import ConfigError, EncryptionError, OutboxError
from edge_app.outbox import OutboxReader, OutboxSummary, salvage_file

_KEY_HELP = (
    "key file to decrypt encrypted events with (base64 or raw, mode 0600); default with "
    "--config: the key its encryption section names"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "outbox",
        help="inspect the stored, undelivered events (read-only: creates no file beside the "
        "outbox, works while the daemon runs), or salvage a damaged file",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", "-c", type=Path, help="config file (its outbox.path)")
    where.add_argument("--db", type=Path, help="the outbox file itself")
    cmds = parser.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    status = cmds.add_parser(
        "status", help="depth, bytes, oldest age, by severity and rule, drops, side lanes"
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=_status)
    peek = cmds.add_parser("peek", help="print the oldest N stored events, one JSON per line")
    peek.add_argument("n", type=int, nargs="?", default=10, help="how many events (default 10)")
    peek.add_argument("--key", type=Path, metavar="FILE", help=_KEY_HELP)
    peek.set_defaults(func=_peek)
    export = cmds.add_parser("export", help="write every stored event to FILE as JSON lines")
    export.add_argument("file", type=Path, help="JSON-lines file to write")
    export.add_argument("--key", type=Path, metavar="FILE", help=_KEY_HELP)
    export.set_defaults(func=_export)
    salvage = cmds.add_parser(
        "salvage",
        help="copy every readable event of a damaged outbox FILE into this outbox",
        description=(
            "Copy every readable event (keeping its id and seq), side-lane row and drop count "
            "of the damaged outbox FILE (and its FILE-wal) into the outbox named by --db or "
            "--config, for the daemon to deliver on its next start. FILE is only read. The "
            "outbox must not be in use: stop edge-app first. Events it already holds (same id) "
            "are not copied again. Encrypted events are copied as stored (no key needed) and "
            "decrypt with the key they were written with."
        ),
    )
    salvage.add_argument("file", type=Path, help="the damaged file, e.g. outbox.db.corrupt-<time>")
    salvage.add_argument(
        "--create", action="store_true", help="salvage into a new file (it must not exist)"
    )
    salvage.add_argument(
        "--again", action="store_true", help="copy FILE even though it was salvaged here before"
    )
    salvage.add_argument("--json", action="store_true", help="print the report as one JSON object")
    salvage.set_defaults(func=_salvage)


def _sealer(args: argparse.Namespace, config: AppConfig | None) -> Sealer | None:
    """The key to decrypt with: ``--key``, else the config's; None if neither names one."""
    if args.key is not None:
        return load_sealer(args.key, None, seal_new=False)
    if config is not None:
        crypt = config.encryption
        return load_sealer(crypt.key_file, crypt.credential, seal_new=False)
    return None


def _run(args: argparse.Namespace, action: str) -> int:
    try:
        config = load_config(args.config) if args.config is not None else None
        path: Path = args.db if config is None else config.outbox_path
        with OutboxReader(path) as reader:
            if action == "status":
                _print_status(reader.summary(), as_json=args.json)
                return 0
            # A key is loaded only for a store that holds encrypted events.
            sealer = _sealer(args, config) if reader.first_sealed() is not None else None
            if action == "peek":
                for body in reader.bodies(max(0, args.n), sealer=sealer):
                    print(body)
            else:
                n = 0
                bodies = reader.bodies(sealer=sealer)  # a missing or wrong key fails here
                with args.file.open("w", encoding="utf-8") as out:
                    for body in bodies:
                        out.write(body + "\n")
                        n += 1
                print(f"exported {n} event(s) to {args.file}")
            return _report_unreadable(reader)
    except (ConfigError, OutboxError, EncryptionError, OSError) as exc:
        print(f"edge-app outbox: {exc}", file=sys.stderr)
        return 2


def _report_unreadable(reader: OutboxReader) -> int:
    """Exit code 1 and one line per skipped event if some did not decrypt, else 0."""
    if not reader.unreadable:
        return 0
    print(
        f"edge-app outbox: {len(reader.unreadable)} encrypted event(s) left out: they do not "
        "decrypt with the right key (altered, or moved from another row):",
        file=sys.stderr,
    )
    for seq, why in reader.unreadable:
        print(f"  seq {seq}: {why}", file=sys.stderr)
    return 1


def _salvage(args: argparse.Namespace) -> int:
    try:
        target: Path = args.db if args.db is not None else load_config(args.config).outbox_path
        report = salvage_file(args.file, target, create=args.create, again=args.again)
    except (ConfigError, OutboxError, OSError) as exc:
        print(f"edge-app outbox salvage: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(f"{args.file} -> {target}: {report.summary()}; seq continues after {report.last_seq}")
    return 0


def _status(args: argparse.Namespace) -> int:
    return _run(args, "status")


def _peek(args: argparse.Namespace) -> int:
    return _run(args, "peek")


def _export(args: argparse.Namespace) -> int:
    return _run(args, "export")


def _print_status(summary: OutboxSummary, *, as_json: bool) -> None:
    age = None if summary.oldest_wall is None else round(time.time() - summary.oldest_wall, 1)
    if as_json:
        print(json.dumps({**asdict(summary), "oldest_age_s": age}))
        return
    oldest = (
        "-" if summary.oldest_wall is None else f"{format_utc(summary.oldest_wall)} ({age} s ago)"
    )
    depth = f"{summary.depth} event(s), {summary.bytes:,} bytes, {summary.leased} in flight"
    print(f"depth        {depth}")
    print(f"encrypted    {summary.encrypted} of {summary.depth} event(s)")
    print(f"oldest       {oldest}")
    print(f"last seq     {summary.last_seq}")
    print(f"by severity  {summary.by_severity or '-'}")
    print(f"by rule      {summary.by_rule or '-'}")
    print(f"dropped      {summary.dropped or '-'}")
    print(f"dead letter  {summary.dead_letter} event(s) never sendable, kept in the file")
    for name, lane in summary.lanes.items():
        print(
            f"lane {name:<9}{lane['rows']} row(s), {lane['bytes']:,} bytes,"
            f" {lane['dropped']} dropped"
        )
