"""The appliance's outbox at work: a corrupt file at startup (moved aside, fresh start,
reported) and the snapshot lane (each event's JPEG on its own topic)."""

from __future__ import annotations

import time
from pathlib import Path

from edge_app.app import EdgeApp
from edge_app.outbox import RECOVERY_RULE
from edge_app.uplink import InMemoryTransport, decode_batch
from simulator.scene import SceneTruth
from tests.integration.test_app import app_config, stored_events


def test_corrupt_outbox_at_startup_is_moved_aside_and_reported(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    clip, _ = scene
    config = app_config(tmp_path, clip, default_model, enabled=False)
    config.outbox_path.parent.mkdir(parents=True, exist_ok=True)
    config.outbox_path.write_bytes(b"\x00garbage from a worn SD card" * 512)

    with EdgeApp(config) as app:
        app.wait()
        raised = app.stats().events

    moved = list(config.outbox_path.parent.glob(f"{config.outbox_path.name}.corrupt-*"))
    assert len(moved) == 1
    assert moved[0].read_bytes().startswith(b"\x00garbage")  # kept, not deleted
    events = stored_events(config)
    assert events[0]["rule"] == RECOVERY_RULE
    assert events[0]["moved_to"] == str(moved[0])
    assert len(events) == raised + 1  # the service went on raising events


def test_each_start_event_snapshot_is_published_on_its_own_topic(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    clip, _ = scene
    # InMemoryTransport replaces the MQTT connection: there is no TLS to configure.
    config = app_config(tmp_path, clip, default_model, insecure_plaintext=True)
    transport = InMemoryTransport()
    with EdgeApp(config, transport=transport) as app:
        app.wait()
        end = time.monotonic() + 30.0
        while time.monotonic() < end and not _all_snapshots_sent(transport):
            time.sleep(0.05)
    events = [e for m in transport.published if m.topic.endswith("/events") for e in
              decode_batch(m.payload)["events"]]  # fmt: skip
    with_snapshot = {e["id"] for e in events if e.get("snapshot")}
    assert with_snapshot, "the clip raised no event with a snapshot"
    snaps = {
        m.topic.rsplit("/", 1)[1]: m.payload
        for m in transport.published
        if m.topic.startswith("edge-app/test-cam/snapshots/")
    }
    assert set(snaps) == with_snapshot
    for payload in snaps.values():
        assert len(payload) <= 131_072
        assert payload[:2] == b"\xff\xd8"  # JPEG


def _all_snapshots_sent(transport: InMemoryTransport) -> bool:
    events = [
        e
        for m in list(transport.published)
        if m.topic.endswith("/events")
        for e in decode_batch(m.payload)["events"]
    ]
    wanted = {e["id"] for e in events if e.get("snapshot")}
    sent = {
        m.topic.rsplit("/", 1)[1] for m in list(transport.published) if "/snapshots/" in m.topic
    }
    return bool(wanted) and wanted <= sent
