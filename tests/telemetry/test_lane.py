"""The metrics lane lives beside the events in the outbox file without touching them."""

from __future__ import annotations

import sqlite3
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


def test_rows_recorded_before_a_clock_step_are_retimed_before_the_age_cut(
    tmp_path: Path,
) -> None:
    clock = FakeClock(monotonic=10.0, wall=1_200_000_000.0)  # 2008: no RTC battery
    with LaneStore(tmp_path / "o.db", "logs", clock=clock, boot_id="b1") as lane:
        lane.add([(clock.time(), '"before"')])
        clock.advance(20.0)
        clock.set_wall(1_790_000_000.0)
        assert lane.drop_older_than(clock.time() - 86400) == 0  # not "18 years old"
        lane.add([(clock.time(), '"after"')])
        rows = lane.peek(10)
        assert [r.ts for r in rows] == [1_790_000_000.0 - 20.0, 1_790_000_000.0]
        assert lane.times_corrected == 1
    with LaneStore(tmp_path / "o.db", "logs", clock=clock, boot_id="b2") as other_boot:
        clock.set_wall(1_800_000_000.0)
        other_boot.add([(clock.time(), '"next boot"')])
        assert other_boot.times_corrected == 0  # monotonic time of boot b1 says nothing here


def test_a_file_written_before_rows_kept_their_clock_opens_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "o.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE lane_rows (id INTEGER PRIMARY KEY AUTOINCREMENT, lane TEXT NOT NULL,"
            " ts REAL NOT NULL, body TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO lane_rows (lane, ts, body) VALUES ('metrics', 5.0, '{}')")
    conn.close()
    clock = FakeClock()
    with LaneStore(db, "metrics", clock=clock, boot_id="b") as lane:
        clock.set_wall(clock.time() + 3600)  # a step: old rows have no offset to correct by
        lane.add([(clock.time(), "{}")])
        assert [r.ts for r in lane.peek(10)] == [5.0, clock.time()]
