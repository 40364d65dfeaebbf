"""Rule schedules: is a wall-clock time inside a rule's weekly window?"""

from __future__ import annotations

__all__ = ["in_schedule"]

import time

from edge_app.config import ScheduleConfig

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_schedule(schedule: ScheduleConfig | None, wall: float, utc: bool = False) -> bool:
    """Whether ``wall`` (Unix seconds) falls in ``schedule``; None means always.

    Times are the device's local time (``utc=True``: UTC, for tests). A window whose end is
    not after its start runs past midnight and belongs to the day it starts on: ``fri
    22:00-06:00`` covers Friday 22:00 to Saturday 06:00.
    """
    if schedule is None:
        return True
    t = time.gmtime(wall) if utc else time.localtime(wall)
    now = t.tm_hour * 60 + t.tm_min
    today, yesterday = _DAYS[t.tm_wday], _DAYS[(t.tm_wday - 1) % 7]
    start, end = _minutes(schedule.start), _minutes(schedule.end)
    if start < end:
        return today in schedule.days and start <= now < end
    # past midnight: the evening part today, or the morning part of yesterday's window
    return (today in schedule.days and now >= start) or (yesterday in schedule.days and now < end)
