"""Disk used by snapshots over a long replay, without retention (before) and with it.

    python bench/snapshot_retention.py [--json] [--hours 12] [--every-s 30] [--max-mb 40]
                                       [--max-age-h 6] [--outage 2:8]

A busy camera raises an event every ``--every-s`` seconds of simulated time for ``--hours``:
each event's three real JPEGs (annotated, clean, crop of a real clip's frame; the generated
scene when ../shared/realworld is absent) are written by ``SnapshotWriter``, the event is
stored in a real outbox and its snapshot queued on the snapshot lane. The link is up except
during ``--outage`` (hours from the start): while up, every event and snapshot is delivered
at once (lease/ack, ``SnapshotSender``); during the outage nothing is. Retention passes run
every ``snapshots.prune_every_s`` (600 s) of simulated time with the real ``pending`` check.
File times are simulated (each file's mtime is set to its event's time), so hours pass in
seconds. "before" is what the previous code kept: every byte written, as it never deleted a
snapshot. Printed every ``--hours / 6`` hours.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REALWORLD_CLIP = REPO / ".." / "shared" / "realworld" / "videos" / "one-by-one-person-detection.mp4"
PRUNE_EVERY_S = 600.0


def frames(work: Path) -> tuple[list[np.ndarray[Any, Any]], str]:
    """Up to 60 real frames, and where they came from."""
    path = REALWORLD_CLIP
    if not path.is_file():
        from simulator.scene import generate_scene

        path = work / "scene.mp4"
        generate_scene(path, work / "scene.json", seconds=6.0, seed=0)
    capture = cv2.VideoCapture(str(path))
    out: list[np.ndarray[Any, Any]] = []
    while len(out) < 60:
        ok, image = capture.read()
        if not ok:
            break
        out.append(image)
    capture.release()
    return out, path.name


def du(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edge_app.actions import SnapshotWriter, prune_snapshots
    from edge_app.clock import FakeClock
    from edge_app.domain import Detections, Frame, as_image
    from edge_app.outbox import LaneStore, Outbox
    from edge_app.uplink import SnapshotSender, encode_batch, snapshot_row
    from tests.factories import DEVICE, make_event

    images, source = frames(work)
    outage = tuple(float(h) * 3600 for h in args.outage.split(":"))
    clock = FakeClock(wall=1_790_000_000.0)
    start = clock.time()
    root = work / "snapshots"
    writer = SnapshotWriter(root)
    max_bytes = int(args.max_mb * 2**20)
    rows: list[dict[str, Any]] = []
    written = kept_max = events = 0
    peak = (0, 0.0)  # most bytes left after a pass, and when
    prune_s: list[float] = []
    next_prune = start + PRUNE_EVERY_S
    report_every = args.hours * 3600 / 6
    next_report = start + report_every
    db = work / "outbox.db"
    with (
        Outbox(db, clock=clock, device=DEVICE, max_bytes=1 << 30, max_age_s=1e9,
               encoder=encode_batch) as box,
        LaneStore(db, "snapshots", max_rows=100_000) as lane,
    ):  # fmt: skip
        sender = SnapshotSender(lane, root, topic_prefix="edge-app/bench")

        def pending(ids: Any) -> set[str]:
            return box.holding(ids) | sender.queued_ids().intersection(ids)

        while clock.time() - start < args.hours * 3600:
            clock.advance(args.every_s)
            now = clock.time()
            image = as_image(images[events % len(images)])
            event = make_event(clock)
            frame = Frame("dock", events, clock.monotonic(), now, image)
            snap = writer.save(frame, Detections.empty(), event)
            assert snap is not None, "a snapshot could not be written"
            folder = root / Path(snap.file).parent
            for path in folder.glob(f"{event.id}.*"):
                written += path.stat().st_size
                os.utime(path, (now, now))
            stored = box.enqueue(replace(event, snapshot=snap))
            lane.add([(now, snapshot_row(stored.id, snap.file, snap.bytes))])
            events += 1
            if not outage[0] <= now - start < outage[1]:
                while (batch := box.lease(100, 1 << 20)) is not None:
                    box.ack(batch)
                while (publish := sender.next_publish()) is not None:
                    sender.delivered(publish)
            if now >= next_prune:
                t0 = time.perf_counter()
                result = prune_snapshots(
                    root,
                    max_bytes=max_bytes,
                    max_age_s=args.max_age_h * 3600,
                    pending=pending,
                    now=now,
                )
                prune_s.append(time.perf_counter() - t0)
                kept_max = max(kept_max, result.kept)
                if result.bytes > peak[0]:
                    peak = (result.bytes, round((now - start) / 3600, 1))
                next_prune += PRUNE_EVERY_S
            if now >= next_report:
                rows.append(
                    {
                        "hour": round((now - start) / 3600, 1),
                        "events": events,
                        "before_mib": round(written / 2**20, 1),
                        "after_mib": round(du(root) / 2**20, 1),
                        "undelivered": box.stats().depth,
                    }
                )
                next_report += report_every
    return {
        "source": source,
        "hours": args.hours,
        "event_every_s": args.every_s,
        "max_mb": args.max_mb,
        "max_age_h": args.max_age_h,
        "outage_h": args.outage,
        "bytes_per_event": round(written / events),
        "prune_passes": len(prune_s),
        "prune_ms_median": round(sorted(prune_s)[len(prune_s) // 2] * 1000, 1),
        "prune_ms_max": round(max(prune_s) * 1000, 1),
        "kept_pending_max": kept_max,
        "peak_after_mib": round(peak[0] / 2**20, 1),
        "peak_hour": peak[1],
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--every-s", type=float, default=30.0)
    parser.add_argument("--max-mb", type=float, default=40.0)
    parser.add_argument("--max-age-h", type=float, default=6.0)
    parser.add_argument("--outage", default="2:8", help="START:END in hours from the start")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the over-budget warning during the outage
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['source']}: an event every {args.every_s:g} s for {args.hours:g} h "
        f"({result['bytes_per_event']:,} bytes of JPEG each); snapshots.max_mb {args.max_mb:g}, "
        f"max_age_h {args.max_age_h:g}; link down {args.outage} h"
    )
    print("| hour | events | before: MiB on disk | after: MiB on disk | undelivered events |")
    print("|---|---|---|---|---|")
    for row in result["rows"]:
        print(
            f"| {row['hour']} | {row['events']} | {row['before_mib']} | {row['after_mib']} "
            f"| {row['undelivered']} |"
        )
    print(
        f"{result['prune_passes']} retention passes: median {result['prune_ms_median']} ms, "
        f"max {result['prune_ms_max']} ms; at most {result['kept_pending_max']} due events "
        f"kept as undelivered in one pass; most left after a pass: {result['peak_after_mib']} "
        f"MiB at hour {result['peak_hour']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
