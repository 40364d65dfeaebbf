"""What the builder hands the composition root: the parts of one app, built and opened, and the
seams a caller may fill instead (tests, the demo)."""

from __future__ import annotations

__all__ = ["AppParts", "ConfigChange", "Seams", "Step", "UiParts", "UplinkParts"]

import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge_app.actions import PreviewSlot, Retention
from edge_app.atrest import Sealer
from edge_app.clock import Clock
from edge_app.intake import EventIntake
from edge_app.models import Catalog
from edge_app.models.offer import ModelUpdates
from edge_app.outbox import EventJournal, LaneStats, Outbox
from edge_app.pipeline import CameraWorker, RuntimeHolder
from edge_app.remote import ConfigChange, ShadowClient
from edge_app.remote.jobs import JobsAgent
from edge_app.telemetry import DiskUsage, HealthEvents, sd_notify
from edge_app.telemetry.wiring import Telemetry
from edge_app.updates import ModelUpdater
from edge_app.uplink import (
    DrainLoop,
    Transport,
)
from edge_app.vision.detector import Detector

Step = Callable[[str], None]
"""Called with a step's name before the step runs (``EdgeApp.on_start_step``)."""


@dataclass(frozen=True, slots=True)
class Seams:
    """The parts a caller may supply instead of having them built from the config (tests, the
    demo). A supplied ``transport`` is connected and disconnected by the app; a supplied
    ``detector`` stays the caller's to close. ``notify`` is ``sd_notify``; ``watchdog_s``
    overrides ``$WATCHDOG_USEC``; ``disk_usage`` replaces ``shutil.disk_usage``;
    ``model_updates`` replaces the over-the-air updater model jobs use (tests)."""

    clock: Clock
    transport: Transport | None = None
    detector: Detector | None = None
    catalog: Catalog | None = None
    disk_usage: DiskUsage | None = None
    notify: Callable[[str], bool] = sd_notify
    watchdog_s: float | None = None
    model_updates: ModelUpdates | None = None


@dataclass(frozen=True, slots=True)
class UplinkParts:
    """The MQTT side: the transport, the drain loop with its side lanes, remote config, the
    IoT Jobs agent. ``drain_stop``, ``shadow_stop`` and ``jobs_stop`` end the three threads."""

    transport: Transport
    drain: DrainLoop
    drain_stop: threading.Event
    shadow: ShadowClient
    shadow_stop: threading.Event
    jobs: JobsAgent
    jobs_stop: threading.Event


@dataclass(frozen=True, slots=True)
class UiParts:
    """What the local status page reads besides the app's other parts: the event
    ``journal``, each camera's live-view ``slots``, the at-rest ``sealer`` (snapshots and
    clips may be encrypted) and the side ``lanes``' stats by name."""

    journal: EventJournal
    slots: dict[str, PreviewSlot]
    sealer: Sealer | None
    lanes: dict[str, Callable[[], LaneStats | None]]


@dataclass(frozen=True, slots=True)
class AppParts:
    """Every long-lived part of one app, built and opened; the threads are not started.
    ``intake`` is where any producer of events hands them in; ``health_events`` (None with
    ``health.events: false``) turns the telemetry thread's health reports into events through
    it; ``stop_capture`` ends every camera loop, ``retention_stop`` the retention thread;
    ``config_change`` decides changes made on the device (None when the page is off and
    there is no remote config); ``model_updates`` is the over-the-air model updater."""

    outbox: Outbox
    live: RuntimeHolder
    telemetry: Telemetry
    intake: EventIntake
    health_events: HealthEvents | None
    retention: Retention
    retention_stop: threading.Event
    workers: tuple[CameraWorker, ...]
    stop_capture: threading.Event
    uplink: UplinkParts | None
    model_updates: ModelUpdater
    ui: UiParts | None = None
    config_change: ConfigChange | None = None
