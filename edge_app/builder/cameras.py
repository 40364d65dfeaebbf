"""The camera loops (each with its source, snapshot writer and clip recorder) and the status
page's parts."""

from __future__ import annotations

__all__ = ["camera_loops", "ui_parts"]

import threading
from collections.abc import Callable
from contextlib import ExitStack

from edge_app.actions import (
    ClipRecorder,
    ClipWriter,
    PreviewSlot,
    SnapshotWriter,
    ram_scratch,
)
from edge_app.atrest import Sealer
from edge_app.builder.parts import UiParts
from edge_app.builder.uplink import Wire
from edge_app.clock import Clock
from edge_app.config import AppConfig
from edge_app.intake import EventIntake
from edge_app.outbox import EventJournal, LaneStats
from edge_app.pipeline import CameraParts, CameraWorker, RecentFrames, RuntimeHolder
from edge_app.sources import open_source
from edge_app.telemetry.wiring import Telemetry
from edge_app.vision.fairlock import FairLock


def camera_loops(
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


def ui_parts(
    config: AppConfig,
    effective: AppConfig,
    sealer: Sealer | None,
    stack: ExitStack,
    *,
    wire: Wire,
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
