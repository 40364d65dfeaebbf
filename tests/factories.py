"""Builders of domain objects, and the waiting helpers, shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_app.clock import Clock
from edge_app.domain import Event, ModelRef, Phase, Severity
from edge_app.ids import new_ulid
from edge_app.uplink import DrainLoop, InMemoryTransport

DEVICE = "cam-001"
WAIT_S = 30.0
"""Real-time bound, seconds, on a wait that ends as soon as its condition holds (``wait_until``,
``DrainLoop.flush`` of what can all be sent): how long a failing test waits, never a timing
check, so generous enough for a loaded machine."""
FLUSH_STEP_S = 0.05
"""Real-time budget, seconds, of each ``flush`` the helpers below drive. Without a ``run()``
thread every flush runs at least one drain cycle however slow the machine, and settles what was
acknowledged before it returns (InMemoryTransport acknowledges at once), so the helpers count
cycles, never how many fit into the budget."""


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


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Poll ``predicate`` every 10 ms until it is true or ``timeout`` seconds pass; returns its
    last answer. A bound on how long a failing test waits, never a timing check."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def flush_until(
    drain: DrainLoop,
    predicate: Callable[[], bool],
    *,
    step_s: float = FLUSH_STEP_S,
    timeout: float = WAIT_S,
) -> bool:
    """Drive ``drain`` (not running on a thread) with ``flush(step_s)`` calls until
    ``predicate`` is true or ``timeout`` seconds pass; returns its last answer.

    For progress ``flush`` does not wait for by itself (side lanes: ``flush`` returns once the
    events are out) or that a fake clock holds back. ``step_s`` is real time; a longer step
    suits a real broker, whose PUBACK must arrive within one flush to be counted by it."""

    def step() -> bool:
        drain.flush(step_s)
        return predicate()

    return wait_until(step, timeout)


def flush_until_stalled(
    drain: DrainLoop, transport: InMemoryTransport, *, timeout: float = WAIT_S
) -> bool:
    """Drive ``drain`` with ``flush`` calls until one sends nothing new (nothing published or
    rejected by ``transport``): nothing more may go at the clock's current time (rate limits,
    retry backoff on a frozen FakeClock) or nothing is left. Returns that last flush's answer
    (True: the outbox is empty). Fails the test if the drain still sends after ``timeout`` s.

    This is how a test says "at this fake time exactly N go out": counting what a real-time
    budget let through would depend on the machine's speed. Sound because each flush starts
    with nothing in flight (the one before settled or released it) and never holds back a
    partial batch, so a cycle that may send does send."""
    last = False

    def stalled() -> bool:
        nonlocal last
        before = len(transport.published) + len(transport.rejected)
        last = drain.flush(FLUSH_STEP_S)
        return len(transport.published) + len(transport.rejected) == before

    if not wait_until(stalled, timeout):
        raise AssertionError(f"the drain was still sending after {timeout} s")
    return last
