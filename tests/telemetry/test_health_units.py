"""Health verdicts from counters, a fake clock and a fake disk (the ``disk_usage`` seam)."""

from __future__ import annotations

from edge_app.clock import FakeClock
from edge_app.telemetry import HealthMonitor, HealthThresholds
from tests.fakes import Cam, World, health_monitor


def monitor(clock: FakeClock, cams: dict[str, Cam], world: World) -> HealthMonitor:
    thresholds = HealthThresholds(camera_stale_s=10, detector_stuck_s=10, uplink_down_s=60)
    return health_monitor(clock, cams, world, thresholds)


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
