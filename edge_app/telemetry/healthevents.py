"""Health changes as events: a camera gone stale, a stuck
detector, a low disk, a nearly full outbox, a clock that does not synchronise.

``HealthEvents.observe`` is fed every ``HealthReport`` the telemetry thread computes. A
condition that appears gives a ``start`` event (rule ``health``, ``label`` its kind,
``camera`` the camera's name or ``system``, severity by kind), one that clears gives the
matching ``end`` (``start_id``, ``duration_s``, ``end_reason: cleared``); ``close`` ends what
is still open when the app stops (``end_reason: stopped``). The events go to the same sink as
the camera loops' events (the app's ``EventIntake.accept``), so they are stored in the outbox
and delivered like any other, and the cloud sees them after an outage too.
"""

from __future__ import annotations

__all__ = ["HEALTH_RULE", "HEALTH_SEVERITY", "HealthEvents"]

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge_app.clock import Clock
from edge_app.domain import EndReason, Event, ModelRef, Phase, Severity
from edge_app.errors import EdgeAppError
from edge_app.ids import new_ulid
from edge_app.telemetry.health import Condition, HealthReport

_log = logging.getLogger(__name__)

HEALTH_RULE = "health"
HEALTH_SEVERITY = {
    # A camera that sees nothing, or a detector that decides nothing, is a camera offline.
    "camera_stale": Severity.HIGH,
    "detector_stuck": Severity.HIGH,
    # Events are about to be evicted: lowest severity first, but lost all the same.
    "outbox_full": Severity.HIGH,
    "disk_low": Severity.MEDIUM,
    # The device works; its times are corrected once the clock syncs.
    "clock_unsynced": Severity.LOW,
}
_DEVICE_SUBJECT = "system"


@dataclass(frozen=True, slots=True)
class _Open:
    event_id: str
    mono: float


class HealthEvents:
    """Turns health conditions into start/end events handed to ``sink`` (the app's
    ``EventIntake.accept``: it stores the event and wakes the drain). ``model`` gives the
    running model, for the events' lineage. Thread-safe; the telemetry thread calls
    ``observe``."""

    def __init__(
        self,
        sink: Callable[[Event], object],
        *,
        device: str,
        model: Callable[[], ModelRef],
        clock: Clock,
    ) -> None:
        self._sink = sink
        self._device = device
        self._model = model
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Open] = {}
        self._closed = False

    def observe(self, report: HealthReport) -> None:
        """Raise ``start`` for each new condition of ``report`` and ``end`` for each gone
        (nothing once ``close`` was called)."""
        with self._lock:
            if self._closed:
                return
            now = {(c.kind, c.subject): c for c in report.conditions}
            for key in [k for k in self._open if k not in now]:
                self._end(key, EndReason.CLEARED)
            for key, condition in now.items():
                if key not in self._open:
                    self._start(key, condition)

    def close(self) -> None:
        """End every open condition (the app is stopping); later reports are ignored."""
        with self._lock:
            self._closed = True
            for key in list(self._open):
                self._end(key, EndReason.STOPPED)

    def _event(self, kind: str, subject: str, phase: Phase, extra: dict[str, object]) -> Event:
        wall, mono = self._clock.time(), self._clock.monotonic()
        return Event(
            id=new_ulid(wall),
            device=self._device,
            camera=subject or _DEVICE_SUBJECT,
            rule=HEALTH_RULE,
            phase=phase,
            severity=HEALTH_SEVERITY.get(kind, Severity.MEDIUM),
            wall=wall,
            mono=mono,
            label=kind,
            score=1.0,
            bbox=(0.0, 0.0, 0.0, 0.0),
            model=self._model(),
            extra=extra,
        )

    def _emit(self, event: Event) -> bool:
        try:
            self._sink(event)
        except EdgeAppError as exc:
            # The outbox refused it (disk full, ...): health is reported again next tick.
            _log.warning("health event %s %s not stored: %s", event.label, event.phase, exc)
            return False
        return True

    def _start(self, key: tuple[str, str], condition: Condition) -> None:
        extra: dict[str, object] = {"detail": condition.detail}
        event = self._event(condition.kind, condition.subject, Phase.START, extra)
        if self._emit(event):
            self._open[key] = _Open(event.id, event.mono)

    def _end(self, key: tuple[str, str], reason: EndReason) -> None:
        opened = self._open[key]
        duration = round(self._clock.monotonic() - opened.mono, 1)
        extra = {"start_id": opened.event_id, "duration_s": duration, "end_reason": reason}
        if self._emit(self._event(key[0], key[1], Phase.END, extra)):
            del self._open[key]
