"""``build_app``: every part of one app, opened in dependency order, each close on the caller's
stack the moment the part exists."""

from __future__ import annotations

__all__ = ["build_app"]

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack

from edge_app.actions import Retention
from edge_app.atrest import Sealer, load_sealer
from edge_app.builder.cameras import camera_loops, ui_parts
from edge_app.builder.parts import AppParts, Seams, Step
from edge_app.builder.uplink import (
    Wire,
    config_changes,
    drain_loop,
    mqtt_transport,
    side_lanes,
    update_reporter,
    uplink_parts,
)
from edge_app.config import AppConfig, ConfigSnapshot, LastGoodStore, effective_config
from edge_app.errors import ConfigError, FieldError
from edge_app.files import loose_bits, private_dir
from edge_app.intake import EventIntake
from edge_app.models import Registry, RemoteChoices, default_model_dir, load_manifest
from edge_app.outbox import Outbox, recovery_event
from edge_app.pipeline import CameraWorker, RecentFrames, Runtime, RuntimeHolder
from edge_app.reconfigure import RuntimeApplier
from edge_app.remote import Outcome, ShadowHandler
from edge_app.telemetry import HealthEvents, TimeoutExtender, load_token
from edge_app.telemetry.wiring import Telemetry
from edge_app.updates import ModelUpdater, UpdateParts
from edge_app.vision.detector import open_detector
from edge_app.vision.fairlock import FairLock

log = logging.getLogger(__name__)


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
    wire = Wire()
    if config.uplink.enabled:
        step("uplink lanes")
        lanes = side_lanes(config, outbox, sealer, stack, wire)
        step("transport")
        wire.transport = seams.transport or mqtt_transport(config)
        wire.drain = drain_loop(
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
    ui = ui_parts(config, effective, sealer, stack, wire=wire, telemetry=telemetry)
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
        camera_loops(
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
    shadow, config_change = config_changes(
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
            on_record=update_reporter(shadow),
            stop=stop_capture,
        ),
    )
    uplink = uplink_parts(
        config, wire, shadow, clock=clock, models=seams.model_updates or model_updates
    )
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
