"""The real appliance prunes its snapshots periodically, and never those of an event that is
still in the outbox or whose snapshot is still queued for upload: offline, old snapshots over
the budget all stay; once the events and their snapshots are delivered, they go. The same with
encryption at rest, whose snapshots are ``<name>.jpg.enc``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edge_app.app import EdgeApp
from edge_app.atrest import generate_key_file
from edge_app.config import parse_config
from edge_app.outbox import OutboxReader
from edge_app.uplink import InMemoryTransport
from simulator.scene import SceneTruth
from tests.app.test_app import app_config
from tests.factories import wait_until


def jpegs(root: Path, suffix: str = "") -> list[Path]:
    return sorted(root.rglob(f"*.jpg{suffix}"))


def backdate(files: list[Path], seconds: float) -> None:
    then = time.time() - seconds
    for path in files:
        os.utime(path, (then, then))


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_snapshots_stay_while_undelivered_and_go_once_delivered(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth], encrypted: bool
) -> None:
    clip, _ = scene
    base = app_config(tmp_path, clip, default_model, insecure_plaintext=True)
    key = tmp_path / "at-rest.key"
    if encrypted:
        generate_key_file(key)
    suffix = ".enc" if encrypted else ""
    config = parse_config(
        {
            **base.model_dump(mode="json", exclude_none=True),
            "snapshots": {"max_mb": 0.01, "max_age_h": 1.0, "prune_every_s": 0.2},
            "encryption": {"enabled": True, "key_file": str(key)} if encrypted else {},
        }
    )
    transport = InMemoryTransport(online=False)  # nothing is delivered yet
    with EdgeApp(config, transport=transport) as app:
        app.wait()
        retention = app.retention
        assert retention is not None
        files = jpegs(config.snapshot_dir, suffix)
        assert jpegs(config.snapshot_dir, "" if encrypted else ".enc") == []  # one form only
        events = len(files) // 3
        assert events >= 2, "the clip raised too few events with a snapshot"
        backdate(files, 10 * 3600)  # all over max_age_h, and together over max_mb
        passes = retention.passes
        assert wait_until(lambda: retention.passes >= passes + 2)
        assert jpegs(config.snapshot_dir, suffix) == files  # every event still pending: all kept
        assert retention.last is not None
        assert retention.last.kept == events

        transport.set_online(True)

        def delivered() -> bool:
            with OutboxReader(config.outbox_path) as reader:
                summary = reader.summary()
            queued = summary.lanes.get("snapshots", {}).get("rows", 0)
            return summary.depth == 0 and queued == 0

        assert wait_until(delivered)
        assert wait_until(lambda: retention.last is not None and retention.last.bytes == 0)
        assert jpegs(config.snapshot_dir, suffix) == []
    published = [m for m in transport.published if "/snapshots/" in m.topic]
    assert len(published) == events  # each was uploaded before its files went
    assert all(m.payload[:2] == b"\xff\xd8" for m in published)  # as clear JPEGs
