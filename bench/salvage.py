"""Salvage of a damaged outbox: events salvaged against events stored, per place damaged, and
what the salvage costs at startup.

    python bench/salvage.py [--json] [--events 100000] [--case NAME ...]

Builds one real outbox with ``Outbox.enqueue`` (``--events`` events of the size the pipeline
raises, ~520 B of JSON each, plus 1,000 metric rows in the lane), on tmpfs when /dev/shm exists
so that building it does not wait on 100,000 fsyncs. Then, for each case, a copy is damaged at
one place and opened by ``Outbox`` in a fresh process: the integrity check, the salvage and the
swap, timed, with that process's peak RSS. "intact" is the same open of the undamaged copy (the
check alone). The WAL case adds 300 events from a process that dies, so they sit in the WAL,
and garbage in one of its frames.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = (
    "intact",
    "file header",
    "schema page",
    "meta page",
    "index leaf",
    "event leaf",
    "events root",
    "WAL frame",
)


def build(db: Path, events: int) -> None:
    from edge_app.clock import FakeClock
    from edge_app.outbox import LaneStore
    from tests.factories import make_event
    from tests.outbox_damage import open_box

    clock = FakeClock(wall=time.time() - 3600)
    with open_box(db, clock) as box:
        for i in range(events):
            snapshot = {"file": f"dock/{i:08d}.jpg", "sha256": "0" * 64, "bytes": 48211}
            extra = {"track_id": i % 500, "zone": "loading-bay", "snapshot": snapshot}
            box.enqueue(make_event(clock, extra=extra))
            clock.advance(0.01)
    metrics = [json.dumps({"n": "FramesProcessed", "v": i}) for i in range(1000)]
    with LaneStore(db, "metrics", clock=clock) as lane:
        lane.add([(clock.time(), body) for body in metrics])


def damage_case(db: Path, case: str) -> None:
    from tests.outbox_damage import damage, damage_wal_frame, pages, wal_pages, write_with_wal

    if case == "file header":
        damage(db, 1, length=100)
    elif case == "schema page":
        damage(db, 1)
    elif case == "meta page":
        damage(db, pages(db, "meta")[0])
    elif case == "index leaf":
        leaves = pages(db, "sqlite_autoindex_events_1", "leaf")
        damage(db, leaves[len(leaves) // 2])
    elif case == "event leaf":
        leaves = pages(db, "events", "leaf")
        damage(db, leaves[len(leaves) // 2])
    elif case == "events root":
        damage(db, pages(db, "events", "internal")[0])
    elif case == "WAL frame":
        write_with_wal(db, 300)
        frames = wal_pages(db)
        damage_wal_frame(db, len(frames) // 2)


def open_once(db: Path) -> dict[str, Any]:
    """In this (fresh) process: open the outbox, report what came out and what it cost."""
    import logging

    from tests.outbox_damage import open_box

    logging.disable(logging.CRITICAL)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with open_box(db) as box:
        elapsed = time.perf_counter() - t0
        report = box.recovery
        depth = box.stats().depth
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "open_s": round(elapsed, 2),
        "rss_growth_mb": round((peak - before) / 1024, 1),
        "depth": depth,
        "salvaged": report.events if report else None,
        "unreadable": report.unreadable if report else None,
        "exact": report.exact if report else None,
        "wal_frames_skipped": report.wal_frames_skipped if report else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--case", action="append", choices=CASES, help="only these cases")
    parser.add_argument("--open", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.open is not None:
        print(json.dumps(open_once(args.open)))
        return 0
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="bench-salvage-", dir=base))
    try:
        source = work / "source" / "outbox.db"
        source.parent.mkdir()
        t0 = time.perf_counter()
        build(source, args.events)
        build_s = time.perf_counter() - t0
        rows = []
        for case in args.case or CASES:
            db = work / case.replace(" ", "-") / "outbox.db"
            db.parent.mkdir()
            for name in os.listdir(source.parent):
                shutil.copy(source.parent / name, db.parent / name)
            damage_case(db, case)
            count = args.events + (300 if case == "WAL frame" else 0)
            out = subprocess.run(
                [sys.executable, __file__, "--open", str(db)],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            rows.append({"case": case, "stored": count, **json.loads(out.stdout)})
        result = {"events": args.events, "build_s": round(build_s, 1), "cases": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"outbox of {args.events:,} events (+1,000 metric rows), built in {build_s:.0f} s")
    print(f"{'damaged':<13}{'stored':>9}{'delivered':>11}{'unreadable':>12}{'exact':>7}"
          f"{'open s':>8}{'RSS +MB':>9}")  # fmt: skip
    for r in rows:
        print(
            f"{r['case']:<13}{r['stored']:>9,}{r['depth']:>11,}"
            f"{'-' if r['unreadable'] is None else r['unreadable']:>12}"
            f"{'-' if r['exact'] is None else str(r['exact']).lower():>7}"
            f"{r['open_s']:>8.2f}{r['rss_growth_mb']:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
