"""Cost of counting snapshots against the outbox byte budget: enqueue rate side by side.

    python bench/snapshot_budget.py [--json] [--events 1000] [--queued 1100] [--rounds 3]

Each round enqueues ``--events`` realistic events (one store, synchronous=FULL, on this disk)
three ways, interleaved: no snapshot lane shared; the snapshot lane shared with ``--queued``
rows waiting and room to spare (every enqueue asks the lane its weight); and the same lane
with the budget so tight that every enqueue sheds one snapshot row first. Medians of the
rounds are shown (2-core machine shared with other work: compare within one run only).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one_run(workdir: Path, mode: str, events: int, queued: int) -> float:
    """Events/s of enqueueing ``events`` events in ``mode`` ("none", "room", "shed")."""
    from edge_app.clock import FakeClock
    from edge_app.outbox import LaneStore, Outbox
    from edge_app.uplink import encode_batch, snapshot_row
    from tests.factories import DEVICE, make_event

    clock = FakeClock(wall=time.time())
    db = workdir / f"{mode}-{time.monotonic_ns()}.db"
    size = len(json.dumps(make_event(clock).with_seq(1).to_json(), separators=(",", ":")))
    # Rows weigh what one event does, so with the budget full ("shed") every enqueue pushes
    # one row out first; otherwise the budget has room to spare.
    jpeg = size - len(snapshot_row(f"{0:026d}", f"cam/{0:026d}.jpg", size))
    budget = queued * size + 10 if mode == "shed" else 1 << 34
    with (
        Outbox(db, clock=clock, device=DEVICE, max_bytes=budget, max_age_s=1e9,
               encoder=encode_batch) as box,
        LaneStore(db, "snapshots", max_rows=1_000_000) as lane,
    ):  # fmt: skip
        lane.add([(clock.time(), snapshot_row(f"{i:026d}", f"cam/{i:026d}.jpg", jpeg))
                  for i in range(queued)])  # fmt: skip
        if mode != "none":
            box.share_budget(lane)
        t0 = time.perf_counter()
        for _ in range(events):
            box.enqueue(make_event(clock))
        elapsed = time.perf_counter() - t0
        if mode == "shed":
            assert lane.stats().dropped >= events, "not every enqueue made the lane shed"
        assert box.stats().dropped == 0
    return events / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--queued", type=int, default=1100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.events * 1.05 > args.queued:
        # Later seqs take more digits: a few events shed two rows; the lane must not run dry.
        parser.error("--queued must be >= 1.05 x --events: each 'shed' enqueue sheds a row")
    logging.disable(logging.WARNING)  # one "dropped 1 row" line per enqueue otherwise
    rates: dict[str, list[float]] = {"none": [], "room": [], "shed": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for mode, values in rates.items():
                values.append(one_run(Path(tmp), mode, args.events, args.queued))
    result: dict[str, Any] = {
        f"{mode}_events_per_s": round(statistics.median(values), 1)
        for mode, values in rates.items()
    }
    result.update(events=args.events, queued=args.queued, rounds=args.rounds)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.events} enqueues, {args.queued} snapshot rows queued, median of {args.rounds}")
    print("| snapshot lane | events/s |")
    print("|---|---|")
    print(f"| not shared (before) | {result['none_events_per_s']} |")
    print(f"| shared, room to spare | {result['room_events_per_s']} |")
    print(f"| shared, budget full: sheds before storing | {result['shed_events_per_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
