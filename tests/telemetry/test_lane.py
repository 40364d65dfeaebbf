"""The metrics lane lives beside the events in the outbox file without touching them."""

from __future__ import annotations

from pathlib import Path

from edge_app.clock import FakeClock
from edge_app.outbox import LaneStore, Outbox


def test_lane_is_fifo_durable_and_counts_drops(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    with LaneStore(db, "metrics", max_rows=5) as lane:
        lane.add([(100.0 + i, f'{{"i":{i}}}') for i in range(4)])
    with LaneStore(db, "metrics", max_rows=5) as lane:  # reopened: rows survived
        rows = lane.peek(10)
        assert [r.ts for r in rows] == [100.0, 101.0, 102.0, 103.0]
        lane.delete([rows[0].id])
        assert lane.drop_older_than(102.0) == 1
        lane.add([(200.0 + i, "{}") for i in range(5)])  # 7 rows > max 5: two oldest go
        stats = lane.stats()
        assert (stats.rows, stats.dropped, stats.oldest_ts) == (5, 3, 200.0)


def test_lanes_are_separate_and_events_unaffected(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    clock = FakeClock()
    with (
        Outbox(db, clock=clock, device="d", max_bytes=1 << 20, max_age_s=1e6) as outbox,
        LaneStore(db, "metrics") as metrics,
        LaneStore(db, "logs") as logs,
    ):
        metrics.add([(1.0, "m")])
        logs.add([(1.0, "l"), (2.0, "l")])
        assert (metrics.stats().rows, logs.stats().rows) == (1, 2)
        assert outbox.stats().depth == 0
        assert outbox.stats().last_seq == 0
