"""``edge-app review export --out DIR [--format coco|yolo]``: reviewed events as a dataset.

Reads the status page's event journal (``<data_dir>/journal.db``) and the clean snapshots of
the reviewed events (decrypted with the config's key when stored encrypted); writes images,
boxes and labels, and a manifest naming the model of each original decision
(``edge_app.ui.export``). Safe while the daemon runs: the journal is only read.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import sys
from pathlib import Path

from edge_app.atrest import load_sealer
from edge_app.config import load_config
from edge_app.errors import ConfigError, EdgeAppError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "review", help="human review of events on the status page: export the verdicts"
    )
    cmds = parser.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    export = cmds.add_parser(
        "export",
        help="write the reviewed events' clean snapshots with their verdict boxes and labels "
        "as a COCO or YOLO dataset, with a manifest naming the model of each decision",
    )
    export.add_argument(
        "--config", "-c", type=Path, required=True, help="the daemon's config file (data_dir)"
    )
    export.add_argument(
        "--out", type=Path, required=True, help="folder to write (created 0700; files 0600)"
    )
    export.add_argument(
        "--format",
        choices=("coco", "yolo"),
        default="coco",
        help="coco: annotations.json; yolo: labels/*.txt, classes.txt, data.yaml (default coco)",
    )
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    # imported here: the other commands need neither the store nor OpenCV
    from edge_app.outbox import EventJournal  # noqa: PLC0415
    from edge_app.ui import export_reviews  # noqa: PLC0415

    try:
        config = load_config(args.config)
        path = config.journal_path
        if not path.exists():
            print(
                f"edge-app review export: no journal at {path}: the status page (ui.enabled) "
                "has recorded no event yet",
                file=sys.stderr,
            )
            return 2
        crypt = config.encryption
        sealer = load_sealer(crypt.key_file, crypt.credential, seal_new=False)
        with EventJournal(path, max_rows=config.ui.journal_rows, sealer=sealer) as journal:
            report = export_reviews(
                journal, config.snapshot_dir, args.out, fmt=args.format, sealer=sealer
            )
    except (ConfigError, EdgeAppError, OSError) as exc:
        print(f"edge-app review export: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {report.images} image(s) with {report.boxes} box(es) to {args.out} "
        f"({args.format}); skipped {len(report.skipped)} without a readable snapshot"
    )
    for event_id, why in sorted(report.skipped.items()):
        print(f"  skipped {event_id}: {why}")
    return 0
