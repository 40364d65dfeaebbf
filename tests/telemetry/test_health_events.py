"""Health changes as events: HealthMonitor's conditions through HealthEvents into a sink."""

from __future__ import annotations

from edge_app.clock import FakeClock
from edge_app.domain import EndReason, Event, ModelRef, Phase, Severity
from edge_app.errors import OutboxError
from edge_app.telemetry import HealthEvents, HealthMonitor, HealthThresholds
from tests.fakes import Cam, Recorded, World, health_monitor

MODEL = ModelRef("ssd_mobilenet_v2_coco", "7046f31a72ec")


def setup(
    clock: FakeClock, cams: dict[str, Cam], world: World
) -> tuple[HealthMonitor, list[Event], HealthEvents]:
    thresholds = HealthThresholds(camera_stale_s=10, detector_stuck_s=10, clock_unsynced_s=60)
    monitor = health_monitor(clock, cams, world, thresholds, watch_uplink=False)
    raised = Recorded()
    return monitor, raised, HealthEvents(raised, device="cam-001", model=lambda: MODEL, clock=clock)


def test_a_stale_camera_starts_once_and_ends_when_frames_flow_again() -> None:
    clock = FakeClock()
    cams = {"dock": Cam(processed=1), "gate": Cam(processed=1)}
    monitor, raised, events = setup(clock, cams, World())
    events.observe(monitor.check())
    clock.advance(11)
    cams["gate"].processed = 2
    for _ in range(3):  # still stale: no second start
        events.observe(monitor.check())
    (start,) = raised
    assert (start.rule, start.label, start.camera, start.phase) == (
        "health", "camera_stale", "dock", Phase.START,
    )  # fmt: skip
    assert start.severity is Severity.HIGH
    assert "camera dock stale" in start.extra["detail"]
    assert start.model == MODEL
    clock.advance(5)
    cams["dock"].processed = 2
    events.observe(monitor.check())
    end = raised[-1]
    assert (end.phase, end.label, end.extra["start_id"]) == (Phase.END, "camera_stale", start.id)
    assert (end.extra["end_reason"], end.extra["duration_s"]) == ("cleared", 5.0)
    assert end.end_reason is EndReason.CLEARED  # typed, like the rules' reasons
    assert end.to_json()["start_id"] == start.id  # a top-level field on the wire


def test_device_conditions_and_a_stuck_detector() -> None:
    clock = FakeClock()
    cams = {"dock": Cam(processed=1)}
    world = World(free=2, outbox_bytes=950)
    monitor, raised, events = setup(clock, cams, world)
    events.observe(monitor.check())
    assert {(e.label, e.camera, e.severity) for e in raised} == {
        ("disk_low", "system", Severity.MEDIUM),
        ("outbox_full", "system", Severity.HIGH),
    }
    cams["dock"].detecting = True
    clock.advance(11)
    events.observe(monitor.check())
    assert raised[-1].label == "detector_stuck"
    assert raised[-1].severity is Severity.HIGH


def test_an_unsynchronised_clock_is_an_event_after_its_threshold_and_not_a_state() -> None:
    clock = FakeClock()
    clock.set_synchronized(False)
    monitor, raised, events = setup(clock, {}, World())
    events.observe(monitor.check())
    clock.advance(30)
    events.observe(monitor.check())
    assert raised == []  # not for long yet
    clock.advance(31)
    report = monitor.check()
    assert report.state == "ok"  # the device works; its times are corrected later
    events.observe(report)
    assert [(e.label, e.severity) for e in raised] == [("clock_unsynced", Severity.LOW)]
    clock.set_synchronized(True)
    events.observe(monitor.check())
    assert raised[-1].phase is Phase.END


def test_close_ends_what_is_open_and_ignores_later_reports() -> None:
    clock = FakeClock()
    monitor, raised, events = setup(clock, {}, World(free=2))
    events.observe(monitor.check())
    events.close()
    assert [(e.phase, e.extra.get("end_reason")) for e in raised] == [
        (Phase.START, None), (Phase.END, "stopped"),
    ]  # fmt: skip
    assert raised[-1].end_reason is EndReason.STOPPED
    events.observe(monitor.check())
    assert len(raised) == 2


def test_a_refused_store_is_retried_on_the_next_report() -> None:
    clock = FakeClock()
    monitor, _, _ = setup(clock, {}, World(free=2))
    stored: list[Event] = []
    full = [True]

    def sink(event: Event) -> Event:
        if full[0]:
            raise OutboxError("disk full")
        stored.append(event)
        return event

    events = HealthEvents(sink, device="cam-001", model=lambda: MODEL, clock=clock)
    events.observe(monitor.check())
    full[0] = False
    events.observe(monitor.check())
    assert [e.label for e in stored] == ["disk_low"]
