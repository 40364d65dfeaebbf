"""The real appliance with the network down and a nearly full outbox: queued snapshots are
dropped (oldest first) to keep events within outbox.max_bytes, and no event is evicted; the
JPEG files stay on disk. Also what `edge-app outbox status` and the metrics then show."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from edge_app.app import EdgeApp
from edge_app.cli import main
from edge_app.clock import FakeClock
from edge_app.config import parse_config
from edge_app.domain import Severity
from edge_app.outbox import Outbox, OutboxReader
from edge_app.uplink import InMemoryTransport, encode_batch
from simulator.scene import SceneTruth
from tests.app.test_app import app_config, stored_events
from tests.factories import DEVICE, make_event

BUDGET = 1 << 20  # the smallest outbox.max_bytes the config allows
ROOM = 100_000  # left free for the clip's events and a few of its JPEGs (~40 KB each)


def test_snapshots_give_way_before_events_when_the_budget_is_small(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    capsys: pytest.CaptureFixture[str],
) -> None:
    clip, _ = scene
    # InMemoryTransport replaces the MQTT connection: there is no TLS to configure.
    base = app_config(tmp_path, clip, default_model, insecure_plaintext=True)
    config = parse_config(
        {**base.model_dump(mode="json", exclude_none=True), "outbox": {"max_bytes": BUDGET}}
    )
    # Events raised earlier, while the network was down, fill all but ROOM bytes.
    clock = FakeClock(wall=time.time())  # recent: the app must not expire them by age
    with Outbox(
        config.outbox_path, clock=clock, device=DEVICE, max_bytes=BUDGET, max_age_s=1e9,
        encoder=encode_batch,
    ) as box:  # fmt: skip
        while box.stats().bytes < BUDGET - ROOM:
            box.enqueue(make_event(clock, rule="earlier", severity=Severity.LOW))
        earlier = box.stats().depth

    transport = InMemoryTransport(online=False)  # the network stays down: nothing drains
    with EdgeApp(config, transport=transport) as app:
        app.wait()
        raised = app.stats().events
        telemetry = app.telemetry
        assert telemetry is not None
        telemetry.collector.collect()
        metric = telemetry.registry.counter("SnapshotsDropped", "Count").value

    events = stored_events(config)
    with_snapshot = [e for e in events if e.get("snapshot")]
    assert len(with_snapshot) >= 4, "the clip raised too few events with a snapshot"
    # The nearly full outbox is a health condition too (outbox_full, start and end at stop),
    # raised by the app besides the camera's events.
    health = [e for e in events if e["rule"] == "health"]
    assert {e["label"] for e in health} <= {"outbox_full"}
    assert len(events) == earlier + raised + len(health)  # no event was evicted
    with OutboxReader(config.outbox_path) as reader:
        summary = reader.summary()
    assert summary.dropped == {}
    lane = summary.lanes["snapshots"]
    assert lane["dropped"] >= 1
    assert lane["rows"] + lane["dropped"] == len(with_snapshot)
    assert summary.bytes + lane["bytes"] <= BUDGET
    assert metric == lane["dropped"]
    # The oldest snapshots went; the newest are still queued, and every JPEG is still on disk.
    assert lane["rows"] >= 1
    newest = with_snapshot[-1]
    assert _queued(config.outbox_path) == [e["id"] for e in with_snapshot[-lane["rows"] :]]
    assert newest["id"] in _queued(config.outbox_path)
    for event in with_snapshot:
        assert (config.device.data_dir / "snapshots" / event["snapshot"]["file"]).is_file()

    assert main(["outbox", "--db", str(config.outbox_path), "status"]) == 0
    out = capsys.readouterr().out
    assert f"{lane['dropped']} dropped" in out
    assert "lane snapshots" in out


def _queued(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT body FROM lane_rows WHERE lane = 'snapshots' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(body)["event_id"] for (body,) in rows]
