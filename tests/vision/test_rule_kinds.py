"""Count, minimum area, cooldown, schedules, absence, dwell and line crossing rules."""

from __future__ import annotations

import calendar
from typing import Any

import pytest
from pydantic import ValidationError

from edge_app.config import ScheduleConfig
from edge_app.domain import Detections, Event, Phase
from edge_app.vision.rules import RuleEngine
from edge_app.vision.schedule import in_schedule
from tests.vision.test_rules import CTX, camera, dets, frame, rule

PERSON = ("person", 0.8, (0.4, 0.4, 0.6, 0.9))
# frame(i) is at wall 1_790_000_000 + i / 10: Monday 2026-09-21 14:13:20 UTC.


def events(seq: list[Detections], **kw: Any) -> list[tuple[int, Event]]:
    cam = kw.pop("cam", {})
    engine = RuleEngine(camera(**cam), [rule(**kw)], CTX, utc_schedules=True)
    return [(i, e) for i, d in enumerate(seq) for e in engine.update(frame(i), d)]


def phases(seq: list[Detections], **kw: Any) -> list[tuple[int, Phase]]:
    return [(i, e.phase) for i, e in events(seq, **kw)]


def people(n: int) -> Detections:
    return dets(*[("person", 0.8, (0.1 * k, 0.4, 0.1 * k + 0.08, 0.9)) for k in range(n)])


def test_count_threshold_starts_only_with_enough_objects() -> None:
    seq = [people(2)] * 5 + [people(3)] * 5 + [people(1)] * 20
    got = events(seq, min_count=3, min_frames=2, end_after_s=1.0)
    # last seen with 3 at frame 9 (0.9 s): end_after_s later at frame 19
    assert [(i, e.phase) for i, e in got] == [(6, Phase.START), (19, Phase.END)]
    assert got[0][1].extra["count"] == 3


def test_boxes_below_min_area_do_not_count() -> None:
    tiny = ("person", 0.9, (0.5, 0.5, 0.52, 0.52))  # 0.0004 of the frame
    assert phases([dets(tiny)] * 10, min_area=0.01) == []
    assert phases([dets(PERSON)] * 10, min_area=0.01) == [(2, Phase.START)]


def test_cooldown_holds_back_the_next_start() -> None:
    # visit, 0.5 s gap (end), visit again straight away, then again after the cooldown
    visit, gap = [dets(PERSON)] * 5, [dets()] * 5
    seq = visit + gap + visit + gap + [dets()] * 20 + visit
    plain = phases(seq, min_frames=1, end_after_s=0.3)
    cooled = phases(seq, min_frames=1, end_after_s=0.3, cooldown_s=2.0)
    assert plain == [
        (0, Phase.START),
        (8, Phase.END),
        (10, Phase.START),
        (18, Phase.END),
        (40, Phase.START),
    ]
    # the end at frame 8 (0.8 s) holds starts back until 2.8 s: frame 10 is skipped
    assert cooled == [(0, Phase.START), (8, Phase.END), (40, Phase.START)]


def _wall(day: int, hhmm: str) -> float:
    """Unix seconds of 2026-09-(21 + day) HH:MM UTC (day 0 is a Monday)."""
    hours, minutes = (int(v) for v in hhmm.split(":"))
    return float(calendar.timegm((2026, 9, 21 + day, hours, minutes, 0, 0, 0, 0)))


@pytest.mark.parametrize(
    ("days", "start", "end", "day", "at", "inside"),
    [
        (["mon"], "09:00", "17:00", 0, "09:00", True),
        (["mon"], "09:00", "17:00", 0, "17:00", False),  # the end is exclusive
        (["mon"], "09:00", "17:00", 1, "10:00", False),  # Tuesday
        (["fri"], "22:00", "06:00", 4, "23:30", True),  # Friday night
        (["fri"], "22:00", "06:00", 5, "05:59", True),  # Saturday morning, Friday's window
        (["fri"], "22:00", "06:00", 5, "22:30", False),  # Saturday night
        (["fri"], "22:00", "06:00", 4, "05:00", False),  # Friday morning: Thursday's window
        (["sun"], "00:00", "24:00", 6, "23:59", True),
    ],
)
def test_schedule_table(
    days: list[Any], start: str, end: str, day: int, at: str, inside: bool
) -> None:
    schedule = ScheduleConfig(days=days, start=start, end=end)
    assert in_schedule(schedule, _wall(day, at), utc=True) is inside


def test_rule_outside_its_schedule_ends_and_stays_quiet() -> None:
    # Armed 14:00-14:14 UTC on Mondays: frames before 14:14:00 (i < 400) are inside.
    seq = [dets(PERSON)] * 420
    got = events(seq, min_frames=1, schedule={"days": ["mon"], "start": "14:00", "end": "14:14"})
    assert [(i, e.phase, e.extra.get("end_reason")) for i, e in got] == [
        (0, Phase.START, None),
        (400, Phase.END, "outside schedule"),
    ]


def test_absence_starts_after_the_quiet_time_and_ends_when_someone_comes() -> None:
    seq = [dets(PERSON)] * 3 + [dets()] * 30 + [dets(PERSON)] * 3
    got = events(seq, absent_for_s=2.0, min_frames=1)
    # last seen at frame 2; absent from frame 3 (0.3 s) -> 2 s later at frame 23
    assert [(i, e.phase) for i, e in got] == [(23, Phase.START), (33, Phase.END)]
    start, end = got[0][1], got[1][1]
    assert (start.label, start.score, start.extra["absent_s"]) == ("person", 0.0, 2.0)
    assert end.extra["end_reason"] == "present"


def test_absence_rule_names_its_zone_area() -> None:
    zone = {"name": "desk", "polygon": [[0.1, 0.2], [0.5, 0.2], [0.5, 0.6], [0.1, 0.6]]}
    got = events([dets()] * 25, absent_for_s=2.0, zone="desk", cam={"zones": [zone]})
    assert got[0][1].bbox == pytest.approx((0.1, 0.2, 0.5, 0.6))


def walker(x: float) -> Detections:
    return dets(("person", 0.8, (x, 0.3, x + 0.1, 0.9)))


def test_dwell_starts_only_after_the_time_in_the_zone() -> None:
    zone = {"name": "desk", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    seq = [walker(0.4)] * 40
    plain = phases(seq, per_object=True, zone="desk", cam={"zones": [zone]})
    dwell = phases(seq, per_object=True, zone="desk", dwell_s=2.5, cam={"zones": [zone]})
    assert plain == [(2, Phase.START)]
    assert dwell == [(25, Phase.START)]


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("both", ["right_to_left", "left_to_right"]),
        ("left_to_right", ["left_to_right"]),
        ("right_to_left", ["right_to_left"]),
    ],
)
def test_line_crossing_with_direction(direction: str, expected: list[str]) -> None:
    # A vertical line at x = 0.5 drawn top to bottom: walking down it (facing the bottom of
    # the image), "left" is x > 0.5. The anchor (x + 0.05) goes 0.25 -> 0.75 (right to left)
    # and back (left to right).
    xs = [0.2 + 0.05 * i for i in range(11)] + [0.7 - 0.05 * i for i in range(11)]
    got = events(
        [walker(x) for x in xs],
        per_object=True,
        line=[[0.5, 0.0], [0.5, 1.0]],
        direction=direction,
    )
    assert [e.extra["crossed"] for _, e in got] == expected
    assert all(e.phase is Phase.START and e.extra["instant"] for _, e in got)


def test_crossing_beside_the_line_does_not_count() -> None:
    xs = [0.2 + 0.05 * i for i in range(11)]  # anchor y 0.9 passes below the short line
    got = events([walker(x) for x in xs], per_object=True, line=[[0.5, 0.0], [0.5, 0.5]])
    assert got == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"line": [[0.5, 0], [0.5, 1]]}, "per_object"),
        ({"dwell_s": 3}, "per_object"),
        ({"absent_for_s": 5, "per_object": True}, "absent_for_s"),
        ({"per_object": True, "line": [[0.5, 0.5], [0.5, 0.5]]}, "two different points"),
        ({"schedule": {"start": "25:00"}}, "start"),
    ],
)
def test_rule_kinds_refuse_bad_combinations(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**fields)
