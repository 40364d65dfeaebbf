"""The collector: copies the counters the parts already keep into the registry.

Runs on the telemetry thread every sample tick, so the frame loop pays nothing for metrics
beyond what it already counted. Reads ``CameraStats`` (through the ``CameraCounters``
protocol: telemetry may not import the pipeline), ``OutboxStats``, ``DrainStats``, the metrics
lane, the process (/proc), the disk holding the outbox and /sys/class/thermal.
"""

from __future__ import annotations

__all__ = ["CameraCounters", "Collector", "DiskUsage", "process_rss_bytes", "read_temperatures"]

import os
import resource
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from edge_app.clock import Clock
from edge_app.outbox import LaneStats, LaneStore, OutboxStats
from edge_app.telemetry.registry import Registry
from edge_app.uplink import DrainStats


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


DiskUsage = Callable[[Path], "_Usage | tuple[int, int, int]"]
"""``shutil.disk_usage``-like seam: ``(total, used, free)`` bytes of the disk holding a path."""


class CameraCounters(Protocol):
    """What the collector reads of a camera loop's ``CameraStats``."""

    @property
    def frames(self) -> int: ...
    @property
    def processed(self) -> int: ...
    @property
    def skipped_rate(self) -> int: ...
    @property
    def skipped_motion(self) -> int: ...
    @property
    def dropped_late(self) -> int: ...
    @property
    def detections(self) -> int: ...
    @property
    def inference_ms(self) -> Sequence[float]: ...


def process_rss_bytes() -> int:
    """Resident set size of this process, bytes (/proc; peak RSS where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def read_temperatures(root: Path = Path("/sys/class/thermal")) -> dict[str, float]:
    """Degrees Celsius per thermal zone type (``cpu-thermal``, ...); empty where not exposed."""
    temps: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            milli = int((zone / "temp").read_text().strip())
            name = (zone / "type").read_text().strip() or zone.name
        except (OSError, ValueError):
            continue  # some zones refuse reads (EINVAL, EACCES); skip them
        temps[name] = milli / 1000.0
    return temps


class Collector:
    """Fills ``registry`` from the app's counters; ``collect()`` is called by one thread.

    The callables return the current snapshots (``None`` when that part is not running);
    ``snapshots`` gives the snapshot lane's ``LaneStats`` (``None`` or absent: no upload).
    ``disk_usage`` is a seam so tests can fake a nearly full disk.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        clock: Clock,
        cameras: Callable[[], Mapping[str, CameraCounters]],
        outbox: Callable[[], OutboxStats | None],
        drain: Callable[[], DrainStats | None],
        connected: Callable[[], bool],
        disk_path: Path,
        disk_usage: DiskUsage = shutil.disk_usage,
        lane: LaneStore | None = None,
        snapshots: Callable[[], LaneStats | None] | None = None,
        thermal_root: Path = Path("/sys/class/thermal"),
    ) -> None:
        self._r = registry
        self._clock = clock
        self._cameras = cameras
        self._outbox = outbox
        self._drain = drain
        self._connected = connected
        self._disk_path = disk_path
        self._disk_usage = disk_usage
        self._lane = lane
        self._snapshots = snapshots
        self._thermal = thermal_root
        self._last_mono: float | None = None
        self._last_processed: dict[str, int] = {}
        self._last_frames: dict[str, int] = {}
        self._last_motion: dict[str, int] = {}
        self._last_cpu: float | None = None

    def collect(self) -> None:
        """Read every source once and update the registry."""
        now = self._clock.monotonic()
        elapsed = None if self._last_mono is None else now - self._last_mono
        self._last_mono = now
        self._collect_cameras(elapsed)
        self._collect_outbox()
        self._collect_uplink()
        self._collect_process(elapsed)

    def _collect_cameras(self, elapsed: float | None) -> None:
        r = self._r
        for name, stats in self._cameras().items():
            processed = stats.processed
            r.counter(
                "FramesCaptured", "Count", "Frames read from the source", camera=name
            ).set_total(stats.frames)
            r.counter(
                "FramesProcessed", "Count", "Frames run through the detector", camera=name
            ).set_total(processed)
            r.counter(
                "FramesDropped", "Count", "Frames skipped by the fps limit", camera=name
            ).set_total(stats.skipped_rate)
            r.counter(
                "FramesDroppedLate", "Count", "Frames dropped as too late (max_lag_s)", camera=name
            ).set_total(stats.dropped_late)
            r.counter(
                "FramesSkippedMotion",
                "Count",
                "Frames not sent to the detector: no motion",
                camera=name,
            ).set_total(stats.skipped_motion)
            frames_new = stats.frames - self._last_frames.get(name, 0)
            motion_new = stats.skipped_motion - self._last_motion.get(name, 0)
            self._last_frames[name], self._last_motion[name] = stats.frames, stats.skipped_motion
            if frames_new > 0:
                r.gauge(
                    "MotionSkipRatio",
                    "None",
                    "Share of frames the motion gate skipped",
                    camera=name,
                ).set(motion_new / frames_new)
            r.counter("Detections", "Count", "Objects detected", camera=name).set_total(
                stats.detections
            )
            new = processed - self._last_processed.get(name, 0)
            self._last_processed[name] = processed
            hist = r.histogram(
                "InferenceTime", "Milliseconds", "Detector time per frame", camera=name
            )
            recent = list(stats.inference_ms)
            if new > 0 and recent:
                hist.observe_many(recent[-min(new, len(recent)) :])
            r.gauge("InferenceP50", "Milliseconds", "Median detector time", camera=name).set(
                hist.quantile(0.5)
            )
            r.gauge(
                "InferenceP95", "Milliseconds", "95th percentile detector time", camera=name
            ).set(hist.quantile(0.95))
            if elapsed:
                r.gauge(
                    "CameraFps", "Count/Second", "Frames processed per second", camera=name
                ).set(max(0, new) / elapsed)

    def _collect_outbox(self) -> None:
        r = self._r
        stats = self._outbox()
        if stats is not None:
            r.gauge("OutboxDepth", "Count", "Events waiting for delivery").set(stats.depth)
            r.gauge("OutboxBytes", "Bytes", "Bytes of events waiting").set(stats.bytes)
            age = 0.0 if stats.oldest_wall is None else self._clock.time() - stats.oldest_wall
            r.gauge("OutboxOldestAge", "Seconds", "Age of the oldest waiting event").set(
                max(0.0, age)
            )
            r.gauge("OutboxDropsPending", "Count", "Evicted events not yet reported").set(
                stats.dropped
            )
            for severity, n in stats.dropped_total.items():
                # A counter: the minute aggregate (and Prometheus rate()) give drops per period.
                r.counter(
                    "OutboxDropped",
                    "Count",
                    "Events dropped undelivered (evicted for space or age, or dead-lettered)",
                    severity=severity,
                ).set_total(n)
            for table, n in stats.salvaged.items():
                r.counter(
                    "OutboxSalvaged",
                    "Count",
                    "Rows copied out of a damaged outbox file at startup",
                    table=table,
                ).set_total(n)
            for table, n in stats.unreadable.items():
                r.counter(
                    "OutboxUnreadable",
                    "Count",
                    "Rows of a damaged outbox file lost: stored, but unreadable",
                    table=table,
                ).set_total(n)
        snapshots = self._snapshots() if self._snapshots is not None else None
        if snapshots is not None:
            r.counter(
                "SnapshotsDropped",
                "Count",
                "Queued snapshot uploads dropped (lane row bound, outbox byte budget, full disk)",
            ).set_total(snapshots.dropped)
        if self._lane is not None:
            lane = self._lane.stats()
            r.gauge("MetricsBacklog", "Count", "Minute aggregates waiting for delivery").set(
                lane.rows
            )
            r.counter(
                "MetricsDropped", "Count", "Aggregates dropped (older than 14 days)"
            ).set_total(lane.dropped)

    def _collect_uplink(self) -> None:
        r = self._r
        r.gauge("UplinkConnected", "None", "1 when the MQTT uplink is connected").set(
            1.0 if self._connected() else 0.0
        )
        drain = self._drain()
        if drain is not None:
            r.counter("UplinkBatches", "Count", "Event batches acknowledged").set_total(
                drain.batches_sent
            )
            r.counter("UplinkEvents", "Count", "Events acknowledged").set_total(drain.events_sent)
            r.counter("UplinkBytes", "Bytes", "Payload bytes acknowledged").set_total(
                drain.bytes_sent
            )
            r.counter("UplinkPublishFailures", "Count", "Failed batch publishes").set_total(
                drain.publish_failures
            )

    def _collect_process(self, elapsed: float | None) -> None:
        r = self._r
        times = os.times()
        cpu = times.user + times.system
        if elapsed and self._last_cpu is not None:
            r.gauge("ProcessCpu", "Percent", "CPU used by the process (100 = one core)").set(
                100.0 * (cpu - self._last_cpu) / elapsed
            )
        self._last_cpu = cpu
        r.gauge("ProcessRss", "Bytes", "Resident memory of the process").set(process_rss_bytes())
        try:
            usage = self._disk_usage(self._disk_path)
            r.gauge("DiskFree", "Bytes", "Free bytes on the disk of the outbox").set(usage[2])
            r.gauge("DiskFreePercent", "Percent", "Free share of that disk").set(
                100.0 * usage[2] / usage[0] if usage[0] else 0.0
            )
        except OSError:
            pass  # the data dir vanished (unmounted): health reports it, metrics go on
        for zone, celsius in read_temperatures(self._thermal).items():
            r.gauge("DeviceTemperature", "None", "Degrees Celsius", zone=zone).set(celsius)
