"""Health verdicts from counters, a fake clock and a fake disk (the ``disk_usage`` seam)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_app.clock import FakeClock
from edge_app.outbox import OutboxStats
from edge_app.telemetry import HealthMonitor, HealthThresholds


@dataclass
class Cam:
    processed: int = 0
    detecting: bool = False


@dataclass
class World:
    connected: bool = True
    free: int = 50
    outbox_bytes: int = 0


def monitor(clock: FakeClock, cams: dict[str, Cam], world: World) -> HealthMonitor:
    return HealthMonitor(
        clock=clock,
        cameras=lambda: cams,
        outbox=lambda: OutboxStats(0, world.outbox_bytes, None, 0, 0, 0, 0),
        outbox_max_bytes=1000,
        connected=lambda: world.connected,
        disk_path=Path("/"),
        disk_usage=lambda _: (100, 100 - world.free, world.free),
        thresholds=HealthThresholds(camera_stale_s=10, detector_stuck_s=10, uplink_down_s=60),
    )


def test_states_follow_the_world() -> None:
    clock = FakeClock()
    cams = {"dock": Cam()}
    world = World()
    health = monitor(clock, cams, world)
    assert health.check().state == "ok"
    cams["dock"].processed = 5
    clock.advance(5)
    report = health.check()
    assert (report.state, report.frames_flowing) == ("ok", True)
    clock.advance(11)  # no frame processed for 11 s
    report = health.check()
    assert report.state == "degraded"
    assert "camera dock stale" in report.reasons[0]
    assert not report.frames_flowing
    cams["dock"].detecting = True  # ... and the loop sits inside detect()
    report = health.check()
    assert report.state == "failing"
    assert "detector stuck" in report.reasons[0]
    cams["dock"].processed, cams["dock"].detecting = 6, False
    assert health.check().state == "ok"


def test_disk_uplink_and_outbox_reasons() -> None:
    clock = FakeClock()
    world = World(free=2, connected=False, outbox_bytes=950)
    health = monitor(clock, {}, world)
    first = health.check()
    assert first.state == "degraded"
    assert any("disk low" in r for r in first.reasons)
    assert any("outbox near full" in r for r in first.reasons)
    assert not any("uplink" in r for r in first.reasons)  # down, but not for long yet
    clock.advance(61)
    assert any("uplink down" in r for r in health.check().reasons)
    world.connected, world.free, world.outbox_bytes = True, 50, 0
    assert health.check().state == "ok"
