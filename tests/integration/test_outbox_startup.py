"""The appliance finds its outbox corrupt at startup: moved aside, fresh start, reported."""

from __future__ import annotations

from pathlib import Path

from edge_app.app import EdgeApp
from edge_app.outbox import RECOVERY_RULE
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
