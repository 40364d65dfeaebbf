"""Builders of domain objects shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_app.clock import Clock
from edge_app.domain import Event, ModelRef, Phase, Severity
from edge_app.ids import new_ulid

DEVICE = "cam-001"


def make_event(
    clock: Clock,
    *,
    rule: str = "intrusion",
    severity: Severity = Severity.MEDIUM,
    label: str = "person",
    extra: dict[str, object] | None = None,
) -> Event:
    """A realistic ``start`` event stamped with ``clock``'s current times."""
    return Event(
        id=new_ulid(clock.time()),
        device=DEVICE,
        camera="dock",
        rule=rule,
        phase=Phase.START,
        severity=severity,
        wall=clock.time(),
        mono=clock.monotonic(),
        label=label,
        score=0.87,
        bbox=(0.1, 0.2, 0.3, 0.4),
        model=ModelRef("ssd_mobilenet_v2_coco", "7046f31a72ec"),
        extra=dict(extra or {}),
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` every 10 ms until it is true or ``timeout`` seconds pass; returns its
    last answer. A bound on how long a failing test waits, never a timing check."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
