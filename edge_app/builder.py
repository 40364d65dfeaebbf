"""Builds every part of the appliance from its config: opened, wired, not started.

``build_app`` opens the parts in dependency order (outbox, detector, uplink lanes, transport,
drain, telemetry, intake, health events, retention, sources and camera loops, remote config)
and registers each one's close on the caller's ``ExitStack`` the moment it exists, so a
failure half-way closes exactly what was opened, newest first. Starting the threads is
``EdgeApp.start``'s job; it registers their stops on the same stack. Nothing here starts a
thread except the clip writer's, which lives and dies with the ``ClipWriter`` (closed on the
stack like the rest).

Where the live configuration is: ``AppParts.live`` (config snapshot + detector in force). The
local file is only read for what remote config can never change: paths, broker, certificates,
identities.
"""

from __future__ import annotations

__all__ = ["AppParts", "Seams", "UiParts", "UplinkParts", "build_app"]

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from edge_app.actions import (
    ClipRecorder,
    ClipWriter,
    PreviewSlot,
    Retention,
    SnapshotWriter,
    ram_scratch,
)
from edge_app.atrest import Sealer, load_sealer
from edge_app.clock import Clock
from edge_app.config import AppConfig, ConfigSnapshot, LastGoodStore, effective_config
from edge_app.errors import ConfigError, FieldError
from edge_app.files import loose_bits, private_dir
from edge_app.intake import EventIntake
from edge_app.models import Catalog, Registry, RemoteChoices, default_model_dir, load_manifest
from edge_app.models.offer import ModelUpdates
from edge_app.outbox import EventJournal, LaneStats, LaneStore, Outbox, recovery_event
from edge_app.pipeline import CameraParts, CameraWorker, RecentFrames, Runtime, RuntimeHolder
from edge_app.reconfigure import RuntimeApplier
from edge_app.remote import Outcome, ShadowClient, ShadowHandler
from edge_app.remote.jobs import JobsAgent
from edge_app.sources import open_source
from edge_app.telemetry import DiskUsage, HealthEvents, TimeoutExtender, load_token, sd_notify
from edge_app.telemetry.wiring import Telemetry, metrics_lane_sender
from edge_app.updates import ModelUpdater, UpdateParts, UpdateRecord
from edge_app.uplink import (
    DrainLoop,
    LaneSender,
    MqttTransport,
    RateLimiter,
    SnapshotSender,
    Transport,
    codec,
    status_payload,
)
from edge_app.vision.detector import Detector, open_detector
from edge_app.vision.fairlock import FairLock

log = logging.getLogger(__name__)

ConfigChange = Callable[[dict[str, Any], float], Outcome]
"""Decides on a change made on the device (``ShadowHandler.handle_local``), waiting up to the
given seconds; the status page's zone editor calls it."""

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
    ui: UiParts | None = None
    config_change: ConfigChange | None = None
    model_updates: ModelUpdater | None = None


def build_app(
    config: AppConfig,
    seams: Seams,
    stack: ExitStack,
    *,
    step: Step,
    on_config_outcome: Callable[[Outcome], None],
) -> AppParts:
    """Build the app ``config`` describes; every close goes on ``stack``. Raises
    ``EdgeAppError`` subclasses on a bad token, data dir, key, store, model or source (what
    was opened is closed by the caller's ``stack``)."""
    clock = seams.clock
    step("health token")
    # Before anything is opened: no token where one is configured refuses the start.
    health_token = load_token(config.health) if config.health.enabled else None
    step("data dir")
    _make_data_dir(config)
    step("encryption key")
    sealer = _open_sealer(config)
    step("outbox")
    outbox = stack.enter_context(
        Outbox(
            config.outbox_path,
            clock=clock,
            device=config.device.thing_name,
            max_bytes=config.outbox.max_bytes,
            max_age_s=config.outbox.max_age_days * 86400,
            sealer=sealer,
            # A salvage of a large damaged outbox can outlast TimeoutStartSec=.
            progress=TimeoutExtender(clock, notify=seams.notify),
        )
    )
    step("config")
    catalog = seams.catalog or load_manifest()
    store = LastGoodStore(config.device.data_dir)
    # Remote config and the last-good overlay may choose manifest models and approved
    # registry entries; the registry is asked afresh at each delta.
    choices = RemoteChoices(
        catalog.names, Registry(config.detector.model_dir or default_model_dir())
    )
    effective, last = effective_config(config, store, choices)
    snapshot = ConfigSnapshot.of(
        effective, "last-good" if last else "file", last.version if last else None
    )
    step("detector")
    # The boot model's detector and every one a remote change loads: closed after the camera
    # loops, which may be mid-frame on any of them, have stopped.
    detectors = stack.enter_context(ExitStack())
    detector = seams.detector or detectors.enter_context(open_detector(effective.detector, catalog))
    live = RuntimeHolder(Runtime(snapshot, detector))
    if outbox.recovery is not None:
        # The cloud must learn what was salvaged and which seqs were lost with the file.
        outbox.report_recovery(
            recovery_event(config.device.thing_name, detector.model, outbox.recovery, clock)
        )
    wire = _Wire()
    if config.uplink.enabled:
        step("uplink lanes")
        lanes = _side_lanes(config, outbox, sealer, stack, wire)
        step("transport")
        wire.transport = seams.transport or _mqtt_transport(config)
        wire.drain = _drain(
            config,
            effective,
            outbox,
            wire.transport,
            lanes=lanes,
            stop=wire.drain_stop,
            clock=clock,
        )
    workers: list[CameraWorker] = []
    step("telemetry")
    telemetry = Telemetry(
        config,
        clock=clock,
        cameras=lambda: {w.camera: w.stats for w in workers},
        outbox=outbox.stats,
        drain=wire.drain.stats if wire.drain is not None else lambda: None,
        transport=wire.transport,
        snapshots=wire.snapshot_lane.stats if wire.snapshot_lane is not None else None,
        disk_usage=seams.disk_usage,
        notify=seams.notify,
        watchdog_s=seams.watchdog_s,
        logs_may_send=wire.logs_may_send,
        health_token=health_token,
    )
    stack.callback(telemetry.close)
    ui = _ui_parts(config, effective, sealer, stack, wire=wire, telemetry=telemetry)
    intake = EventIntake(
        outbox,
        registry=telemetry.registry,
        snapshots=wire.snapshot_lane,
        wake=wire.drain.notify if wire.drain is not None else None,
        journal=ui.journal if ui is not None else None,
    )
    health_events = (
        # the cameras' sink: stored and delivered like their events
        HealthEvents(
            intake.accept,
            device=config.device.thing_name,
            model=lambda: live.current.detector.model,
            clock=clock,
        )
        if config.health.events
        else None
    )
    retention_stop = threading.Event()
    retention = Retention.for_config(
        effective, pending=lambda ids: wire.undelivered(outbox, ids), stop=retention_stop
    )
    step("cameras")
    stop_capture = threading.Event()
    lock = FairLock()  # FIFO: cameras sharing the detector take turns instead of racing for it
    updates = effective.model_updates
    # a few frame references for over-the-air test runs, shared out over the cameras
    recent = RecentFrames(-(-updates.test_frames // len(effective.cameras)), updates.sample_every_s)
    workers.extend(
        _camera_loops(
            config,
            effective,
            live=live,
            intake=intake,
            stop=stop_capture,
            lock=lock,
            sealer=sealer,
            clock=clock,
            stack=stack,
            slots=ui.slots if ui is not None else {},
            recent=recent,
        )
    )
    # One applier for remote config and model updates: its lock keeps their swaps in turn.
    applier = RuntimeApplier(
        live,
        catalog=catalog,
        detector_lock=lock,
        retire=lambda replaced: detectors.callback(replaced.close),
        set_batching=wire.drain.set_batching if wire.drain is not None else None,
    )
    shadow, config_change = _config_changes(
        config,
        wire,
        page=ui is not None,
        applier=lambda: applier,
        handler=lambda applier: ShadowHandler(
            config,
            applier,
            store,
            models=choices,
            clock=clock,
            audit=intake.accept,
            last=last,
        ),
        step=step,
        on_config_outcome=on_config_outcome,
    )
    model_updates = ModelUpdater(
        config,
        UpdateParts(
            live=live,
            applier=applier,
            detector_lock=lock,
            recent=recent,
            cameras=lambda: {w.camera: w.stats for w in workers},
            store=store,
            config_change=config_change,
            catalog=catalog,
            clock=clock,
            on_record=_update_reporter(shadow),
            stop=stop_capture,
        ),
    )
    uplink = _uplink(config, wire, shadow, clock=clock, models=seams.model_updates or model_updates)
    return AppParts(
        outbox=outbox,
        live=live,
        telemetry=telemetry,
        intake=intake,
        health_events=health_events,
        retention=retention,
        retention_stop=retention_stop,
        workers=tuple(workers),
        stop_capture=stop_capture,
        uplink=uplink,
        ui=ui,
        config_change=config_change,
        model_updates=model_updates,
    )


def _update_reporter(
    shadow: tuple[ShadowClient, threading.Event] | None,
) -> Callable[[UpdateRecord], None] | None:
    """Each model update's outcome into the shadow's ``reported.model_update``."""
    if shadow is None:
        return None
    client = shadow[0]
    return lambda record: client.report({"model_update": record.to_json()})


def _config_changes(
    config: AppConfig,
    wire: _Wire,
    *,
    page: bool,
    applier: Callable[[], RuntimeApplier],
    handler: Callable[[RuntimeApplier], ShadowHandler],
    step: Step,
    on_config_outcome: Callable[[Outcome], None],
) -> tuple[tuple[ShadowClient, threading.Event] | None, ConfigChange | None]:
    """Remote config (with an uplink) and the decider of changes made on the device (with
    the status page): one ``ShadowHandler`` serves both, so a local change takes the remote
    one's path, and so does a config job (``_uplink`` hands the Jobs agent's overlays to the
    same thread). Returns the shadow client with its stop event, and the local decider (None:
    neither is needed)."""
    transport, drain = wire.transport, wire.drain
    if transport is not None and drain is not None:
        step("remote config")
        decider = handler(applier())
        shadow_stop = threading.Event()
        shadow = ShadowClient(
            transport,
            decider,
            config.device.thing_name,
            stop=shadow_stop,
            on_outcome=on_config_outcome,
        )
        # the remote-config thread decides local changes too, in turn with shadow messages
        return (shadow, shadow_stop), shadow.local_change
    if page:
        return None, _serialised(handler(applier()))
    return None, None


def _uplink(
    config: AppConfig,
    wire: _Wire,
    shadow: tuple[ShadowClient, threading.Event] | None,
    *,
    clock: Clock,
    models: ModelUpdates,
) -> UplinkParts | None:
    """The MQTT side as one part: transport, drain, shadow client and the IoT Jobs agent,
    whose config jobs go through the shadow thread and model jobs to ``models`` (built after
    the shadow client, since the updater persists a switch through its local-change path)."""
    transport, drain = wire.transport, wire.drain
    if transport is None or drain is None or shadow is None:
        return None
    client, shadow_stop = shadow

    def config_job(desired: dict[str, Any], origin: str) -> Outcome:
        return client.local_change(desired, _CONFIG_JOB_WAIT_S, origin=origin)

    jobs_stop = threading.Event()
    jobs = JobsAgent(
        transport,
        config.device.thing_name,
        stop=jobs_stop,
        clock=clock,
        config=config_job,
        models=models,
    )
    return UplinkParts(transport, drain, wire.drain_stop, client, shadow_stop, jobs, jobs_stop)


_CONFIG_JOB_WAIT_S = 300.0
"""How long a config job waits for the remote-config thread (a new model may load first)."""


def _serialised(handler: ShadowHandler) -> ConfigChange:
    """``handler.handle_local`` for an app without remote config: no client thread exists,
    so a lock keeps its decisions one at a time (the handler is single-threaded)."""
    lock = threading.Lock()

    def change(state: dict[str, Any], timeout_s: float) -> Outcome:
        if not lock.acquire(timeout=timeout_s):
            raise TimeoutError("another config change is being applied")
        try:
            return handler.handle_local(state)
        finally:
            lock.release()

    return change


def _ui_parts(
    config: AppConfig,
    effective: AppConfig,
    sealer: Sealer | None,
    stack: ExitStack,
    *,
    wire: _Wire,
    telemetry: Telemetry,
) -> UiParts | None:
    """The status page's journal (closed on ``stack``) and live-view slots; None when the
    page is off (``ui.enabled`` or ``health.enabled`` false)."""
    if not (config.ui.enabled and config.health.enabled):
        return None
    journal = stack.enter_context(
        EventJournal(config.journal_path, max_rows=config.ui.journal_rows, sealer=sealer)
    )
    lanes: dict[str, Callable[[], LaneStats | None]] = {"metrics": telemetry.lane.stats}
    if wire.snapshot_lane is not None:
        lanes["snapshots"] = wire.snapshot_lane.stats
    slots = {camera.name: PreviewSlot() for camera in effective.cameras}
    return UiParts(journal, slots, sealer, lanes)


@dataclass(slots=True)
class _Wire:
    """The uplink parts while they are being built (all None without an uplink), and the two
    questions other parts ask of them."""

    transport: Transport | None = None
    drain: DrainLoop | None = None
    drain_stop: threading.Event = field(default_factory=threading.Event)
    snapshot_lane: LaneStore | None = None
    snapshots: SnapshotSender | None = None

    def logs_may_send(self) -> bool:
        """CloudWatch Logs shipping (HTTPS, the lowest lane) waits while the MQTT drain has
        anything to send and a connection to send it on; it does not compete for the link."""
        drain, transport = self.drain, self.transport
        if drain is None or transport is None or not transport.is_connected:
            return True
        return not drain.backlog()

    def undelivered(self, outbox: Outbox, ids: Sequence[str]) -> set[str]:
        """Retention's question: which of these events' snapshots must stay (the event is
        still in the outbox, or its snapshot still queued for upload)."""
        held = outbox.holding(ids)
        if self.snapshots is not None:
            held |= self.snapshots.queued_ids().intersection(ids)
        return held


def _drain(
    config: AppConfig,
    effective: AppConfig,
    outbox: Outbox,
    transport: Transport,
    *,
    lanes: list[LaneSender],
    stop: threading.Event,
    clock: Clock,
) -> DrainLoop:
    up, batch = config.uplink, effective.uplink.batch
    return DrainLoop(
        outbox,
        transport,
        topic=f"{config.topic_prefix}/events",
        clock=clock,
        max_events=batch.max_events,
        max_bytes=batch.max_bytes,
        max_wait_s=batch.max_wait_s,
        stop=stop,
        window=up.inflight,
        limiter=RateLimiter(
            clock=clock, publishes_per_s=up.max_publishes_per_s, bytes_per_s=up.max_bytes_per_s
        ),
        lanes=lanes,
        compression=codec(up.compression),
    )


def _camera_loops(
    config: AppConfig,
    effective: AppConfig,
    *,
    live: RuntimeHolder,
    intake: EventIntake,
    stop: threading.Event,
    lock: FairLock,
    sealer: Sealer | None,
    clock: Clock,
    stack: ExitStack,
    slots: dict[str, PreviewSlot],
    recent: RecentFrames | None = None,
) -> list[CameraWorker]:
    """One loop per camera of ``effective``, each with its source opened (closed on
    ``stack``); cameras with ``clips`` share one clip writer (its thread closed on ``stack``)."""
    snapshots = SnapshotWriter(config.snapshot_dir, sealer=sealer)
    writer: ClipWriter | None = None
    workers = []
    for camera in effective.cameras:
        source = open_source(camera, clock)
        stack.callback(source.close)
        clips: ClipRecorder | None = None
        if camera.clips is not None:
            if writer is None:
                # encrypted clips are encoded in RAM first: no clear byte on the disk
                writer = ClipWriter(sealer=sealer, scratch=ram_scratch())
                stack.callback(writer.close)
            c = camera.clips
            clips = ClipRecorder(
                config.clip_dir(camera.name),
                writer,
                pre_s=c.pre_s,
                post_s=c.post_s,
                fps=c.fps,
                width=c.width,
            )
        parts = CameraParts(
            source,
            live,
            intake.accept,
            stop,
            clock,
            lock,
            snapshots,
            clips,
            slots.get(camera.name),
            recent,
        )
        workers.append(CameraWorker(camera, parts))
    return workers


def _side_lanes(
    config: AppConfig, outbox: Outbox, sealer: Sealer | None, stack: ExitStack, wire: _Wire
) -> list[LaneSender]:
    """The drain's lanes below events, highest priority first: snapshots (also kept in
    ``wire``), then metrics (``metrics.sink: mqtt``). Logs go over HTTPS instead and yield by
    ``logs_may_send``."""
    lanes: list[LaneSender] = []
    rows = config.uplink.snapshot_lane_rows
    if rows > 0:
        lane = stack.enter_context(LaneStore(config.outbox_path, "snapshots", max_rows=rows))
        # Pictures count against outbox.max_bytes and give way before any event does.
        outbox.share_budget(lane)
        wire.snapshot_lane = lane
        wire.snapshots = SnapshotSender(
            lane, config.snapshot_dir, topic_prefix=config.topic_prefix, sealer=sealer
        )
        lanes.append(wire.snapshots)
    metrics = metrics_lane_sender(config)
    if metrics is not None:
        stack.callback(metrics.store.close)
        lanes.append(metrics)
    return lanes


def _mqtt_transport(config: AppConfig) -> MqttTransport:
    up = config.uplink
    return MqttTransport(
        up.host,
        up.port,
        client_id=up.client_id or config.device.thing_name,
        tls=up.tls,
        insecure_plaintext=up.insecure_plaintext,
        keepalive_s=up.keepalive_s,
        will=(f"{config.topic_prefix}/status", status_payload("offline")),
        reconnect_min_s=up.reconnect.min_s,
        reconnect_max_s=up.reconnect.max_s,
        inflight=up.inflight,
    )


def _open_sealer(config: AppConfig) -> Sealer | None:
    """The at-rest key of ``encryption`` (None without one); ``EncryptionError`` if the key
    cannot be read, is open to others, or the cryptography package is missing."""
    crypt = config.encryption
    sealer = load_sealer(crypt.key_file, crypt.credential, seal_new=crypt.enabled)
    if sealer is not None:
        log.info(
            "encryption at rest %s (key id %s, %s)",
            "on" if crypt.enabled else "off for new items, reading encrypted ones",
            sealer.key_id,
            sealer.source,
        )
    return sealer


def _make_data_dir(config: AppConfig) -> None:
    """Create ``device.data_dir`` 0700 (it holds images of people); warn about an existing one
    that group or others may enter, which is left as it is (it may be shared on purpose)."""
    path = config.device.data_dir
    try:
        mode = private_dir(path).stat().st_mode
    except OSError as exc:
        raise ConfigError(
            "device.data_dir", [FieldError("device.data_dir", f"cannot create {path}: {exc}")]
        ) from exc
    if loose_bits(mode):
        log.warning(
            "data_dir %s is open to group or others (mode %o) and holds images of people: "
            "chmod 700 it (the systemd unit's StateDirectoryMode=0700 does)",
            path,
            mode & 0o777,
        )
