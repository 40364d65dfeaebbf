"""Health: ``ok``, ``degraded`` or ``failing``, with the reasons, from the app's counters.

Progress is judged by the monitor's own monotonic clock: a camera whose ``processed`` count has
not moved for ``camera_stale_s`` is stale; if its loop is inside ``detect`` meanwhile, the
detector is stuck (``failing``: systemd should restart us, so the watchdog stops too). A disk
below ``disk_low_fraction`` free, an uplink down longer than ``uplink_down_s`` and an outbox
above ``outbox_full_fraction`` of its byte budget are ``degraded``.

Each report also lists its ``conditions``: the same findings as (kind, subject) pairs that
``HealthEvents`` turns into ``health`` events. One more condition changes no state:
``clock_unsynced``, the OS saying the wall clock has not been synchronised for
``clock_unsynced_s`` (the device works and stored times are corrected once it is, but a
clock that never syncs, NTP blocked for instance, is worth an alert).
"""

from __future__ import annotations

__all__ = [
    "Condition",
    "HealthMonitor",
    "HealthReport",
    "HealthThresholds",
    "ProgressCounters",
]

import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from edge_app.clock import Clock
from edge_app.outbox import OutboxStats
from edge_app.telemetry.collector import DiskUsage

State = Literal["ok", "degraded", "failing"]


class ProgressCounters(Protocol):
    """What health reads of a camera loop's ``CameraStats``."""

    @property
    def processed(self) -> int: ...
    @property
    def detecting(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Limits (seconds, fractions 0..1) beyond which health is not ``ok``."""

    camera_stale_s: float = 30.0
    detector_stuck_s: float = 30.0
    disk_low_fraction: float = 0.05
    uplink_down_s: float = 300.0
    outbox_full_fraction: float = 0.9
    clock_unsynced_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Condition:
    """One finding: ``kind`` (``camera_stale``, ``detector_stuck``, ``disk_low``,
    ``outbox_full``, ``clock_unsynced``), ``subject`` (the camera's name; ``""`` for the
    device) and ``detail`` (the reason as ``/healthz`` words it)."""

    kind: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The verdict and why. ``frames_flowing``: every camera processed a frame recently and
    none is stuck (what the systemd watchdog is fed on)."""

    state: State
    reasons: tuple[str, ...] = ()
    frames_flowing: bool = False
    details: dict[str, object] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()


@dataclass(slots=True)
class _Seen:
    processed: int
    since: float


class HealthMonitor:
    """Evaluates health on demand (``check()``), from any thread."""

    def __init__(
        self,
        *,
        clock: Clock,
        cameras: Callable[[], Mapping[str, ProgressCounters]],
        outbox: Callable[[], OutboxStats | None],
        outbox_max_bytes: int,
        connected: Callable[[], bool] | None,
        disk_path: Path,
        disk_usage: DiskUsage = shutil.disk_usage,
        thresholds: HealthThresholds | None = None,
    ) -> None:
        self._clock = clock
        self._cameras = cameras
        self._outbox = outbox
        self._max_bytes = outbox_max_bytes
        self._connected = connected
        self._disk_path = disk_path
        self._disk_usage = disk_usage
        self.thresholds = thresholds or HealthThresholds()
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._down_since: float | None = None
        self._unsynced_since: float | None = None

    def check(self) -> HealthReport:
        """Look at every part now and return the verdict."""
        with self._lock:
            now = self._clock.monotonic()
            failing: list[str] = []
            degraded: list[str] = []
            found: list[Condition] = []
            flowing = self._check_cameras(now, failing, degraded, found)
            self._check_disk(failing, degraded, found)
            self._check_uplink(now, degraded)
            self._check_outbox(degraded, found)
            self._check_clock(now, found)
        state: State = "failing" if failing else "degraded" if degraded else "ok"
        return HealthReport(
            state, tuple(failing + degraded), flowing and not failing, conditions=tuple(found)
        )

    def _check_cameras(
        self, now: float, failing: list[str], degraded: list[str], found: list[Condition]
    ) -> bool:
        t = self.thresholds
        cameras = self._cameras()
        flowing = bool(cameras)
        for name, stats in cameras.items():
            processed = stats.processed
            seen = self._seen.get(name)
            if seen is None or seen.processed != processed:
                self._seen[name] = seen = _Seen(processed, now)
            idle = now - seen.since
            if stats.detecting and idle > t.detector_stuck_s:
                failing.append(f"detector stuck on camera {name} for {idle:.0f} s")
                found.append(Condition("detector_stuck", name, failing[-1]))
                flowing = False
            elif idle > t.camera_stale_s:
                degraded.append(f"camera {name} stale: no frame processed for {idle:.0f} s")
                found.append(Condition("camera_stale", name, degraded[-1]))
                flowing = False
        return flowing

    def _check_disk(self, failing: list[str], degraded: list[str], found: list[Condition]) -> None:
        try:
            total, _, free = self._disk_usage(self._disk_path)
        except OSError as exc:
            failing.append(f"disk of {self._disk_path} unreadable: {exc}")
            return
        if total and free / total < self.thresholds.disk_low_fraction:
            degraded.append(f"disk low: {free / total:.1%} free on {self._disk_path}")
            found.append(Condition("disk_low", "", degraded[-1]))

    def _check_uplink(self, now: float, degraded: list[str]) -> None:
        if self._connected is None:
            return  # uplink disabled: store-only device
        if self._connected():
            self._down_since = None
            return
        if self._down_since is None:
            self._down_since = now
        down = now - self._down_since
        if down > self.thresholds.uplink_down_s:
            degraded.append(f"uplink down for {down:.0f} s")

    def _check_outbox(self, degraded: list[str], found: list[Condition]) -> None:
        stats = self._outbox()
        if stats is None or not self._max_bytes:
            return
        fill = stats.bytes / self._max_bytes
        if fill > self.thresholds.outbox_full_fraction:
            degraded.append(f"outbox near full: {fill:.0%} of outbox.max_bytes")
            found.append(Condition("outbox_full", "", degraded[-1]))

    def _check_clock(self, now: float, found: list[Condition]) -> None:
        if self._clock.synchronized() is not False:  # synchronised, or the OS cannot tell
            self._unsynced_since = None
            return
        if self._unsynced_since is None:
            self._unsynced_since = now
        unsynced = now - self._unsynced_since
        if unsynced > self.thresholds.clock_unsynced_s:
            detail = f"wall clock not synchronised for {unsynced:.0f} s"
            found.append(Condition("clock_unsynced", "", detail))
