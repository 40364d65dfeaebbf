"""OutboxDropped (by severity) and SnapshotsDropped: a real outbox and snapshot lane over a
small budget, the real collector, registry, minute aggregator and Prometheus text."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edge_app.clock import FakeClock
from edge_app.domain import Severity
from edge_app.outbox import LaneStore, Outbox
from edge_app.telemetry import Collector, MinuteAggregator, Registry, render
from edge_app.uplink import encode_batch, snapshot_row
from tests.factories import DEVICE, make_event


def collector_for(reg: Registry, clock: FakeClock, box: Outbox, lane: LaneStore) -> Collector:
    return Collector(
        reg, clock=clock, cameras=dict, outbox=box.stats, drain=lambda: None,
        connected=lambda: False, disk_path=box.path.parent, disk_usage=lambda _: (10, 5, 5),
        snapshots=lane.stats, thermal_root=box.path.parent / "no-thermal",
    )  # fmt: skip


def test_drop_metrics_count_evictions_by_severity_and_shed_snapshots(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "outbox.db"
    size = len(json.dumps(make_event(clock).with_seq(1).to_json(), separators=(",", ":")))
    reg = Registry({"device": DEVICE})
    with (
        Outbox(
            db, clock=clock, device=DEVICE, max_bytes=3 * size + 10, max_age_s=86400.0,
            encoder=encode_batch,
        ) as box,
        LaneStore(db, "snapshots") as lane,
    ):  # fmt: skip
        box.share_budget(lane)
        collector = collector_for(reg, clock, box, lane)
        lane.add([(clock.time(), snapshot_row(f"s{i}", "f.jpg", size)) for i in range(2)])
        collector.collect()
        assert reg.counter("SnapshotsDropped", "Count").value == 0
        # Three events fit only once both snapshots are gone; then two low and one medium
        # event are evicted by the high ones.
        box.enqueue(make_event(clock, severity=Severity.LOW))
        box.enqueue(make_event(clock, severity=Severity.LOW))
        box.enqueue(make_event(clock, severity=Severity.MEDIUM))
        for _ in range(3):
            box.enqueue(make_event(clock, severity=Severity.HIGH))
        collector.collect()
        text = render(reg)
    assert reg.counter("SnapshotsDropped", "Count").value == 2
    assert reg.counter("OutboxDropped", "Count", severity="low").value == 2
    assert reg.counter("OutboxDropped", "Count", severity="medium").value == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    dropped = {
        s.labels["severity"]: s.value
        for s in families["edge_app_outbox_dropped"].samples
        if s.name == "edge_app_outbox_dropped_total"
    }
    assert dropped == {"low": 2.0, "medium": 1.0}
    assert families["edge_app_snapshots_dropped"].samples[0].value == 2.0
    assert families["edge_app_outbox_drops_pending"].samples[0].value == 3.0


def test_drop_metrics_are_counts_per_period_not_running_totals(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "outbox.db"
    size = len(json.dumps(make_event(clock).with_seq(1).to_json(), separators=(",", ":")))
    reg = Registry({"device": DEVICE})
    agg = MinuteAggregator(reg, period_s=60)
    with (
        Outbox(
            db, clock=clock, device=DEVICE, max_bytes=size + 10, max_age_s=86400.0,
            encoder=encode_batch,
        ) as box,
        LaneStore(db, "snapshots") as lane,
    ):  # fmt: skip
        box.share_budget(lane)
        collector = collector_for(reg, clock, box, lane)
        box.enqueue(make_event(clock, severity=Severity.LOW))
        box.enqueue(make_event(clock, severity=Severity.LOW))  # evicts the first
        collector.collect()
        agg.sample(clock.time())
        clock.advance(60.0)
        box.enqueue(make_event(clock, severity=Severity.LOW))
        box.enqueue(make_event(clock, severity=Severity.LOW))  # two more evicted in all
        collector.collect()
        first = agg.sample(clock.time())
        clock.advance(60.0)
        second = agg.sample(clock.time())
    low = (("device", DEVICE), ("severity", "low"))
    per_minute = [
        next(d.total for d in closed if (d.name, d.dims) == ("OutboxDropped", low))
        for closed in (first, second)
    ]
    assert per_minute == [1.0, 2.0]
