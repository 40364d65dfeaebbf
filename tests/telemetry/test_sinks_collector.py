"""EMF documents, the EMF file sink, and the collector reading the parts' own counters."""

from __future__ import annotations

import json
from pathlib import Path

from edge_app.clock import FakeClock
from edge_app.outbox import LaneStore, OutboxStats
from edge_app.pipeline import CameraStats
from edge_app.telemetry import Collector, EmfFileSink, MetricDatum, Registry, emf_documents
from edge_app.uplink import DrainStats

DIMS = (("camera", "dock"), ("device", "d1"))


def test_emf_groups_by_minute_and_dimensions(tmp_path: Path) -> None:
    data = [
        MetricDatum(
            "FramesProcessed", DIMS, 1_790_000_040.0, "Count", 6, 600.0, 90.0, 110.0, "counter"
        ),
        MetricDatum("InferenceTime", DIMS, 1_790_000_040.0, "Milliseconds", 4, 40.0, 8.0, 12.0),
        MetricDatum("OutboxDepth", (("device", "d1"),), 1_790_000_040.0, "Count", 2, 6.0, 2.0, 4.0),
    ]
    docs = emf_documents(data, "EdgeApp")
    assert len(docs) == 2
    cam = next(d for d in docs if "camera" in d)
    directive = cam["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["camera", "device"]]
    assert cam["_aws"]["Timestamp"] == 1_790_000_040_000
    assert cam["FramesProcessed"] == 600.0  # counter: the minute's sum
    assert cam["InferenceTime"] == 10.0  # otherwise: the mean
    assert cam["InferenceTimeStats"] == {"Count": 4, "Sum": 40.0, "Min": 8.0, "Max": 12.0}
    sink = EmfFileSink(tmp_path / "emf" / "metrics.jsonl", "EdgeApp")
    sink.send(data)
    sink.send(data[:1])
    lines = (tmp_path / "emf" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["device"] for line in lines] == ["d1", "d1", "d1"]


def test_collector_reads_counters_process_disk_and_thermal(tmp_path: Path) -> None:
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("48500\n")
    (zone / "type").write_text("cpu-thermal\n")
    clock = FakeClock()
    stats = CameraStats(frames=12, processed=10, skipped_rate=2, detections=3)
    stats.inference_ms.extend([5.0] * 10)
    reg = Registry({"device": "d1"})
    with LaneStore(tmp_path / "o.db", "metrics") as lane:
        lane.add([(1.0, "{}")])
        collector = Collector(
            reg,
            clock=clock,
            cameras=lambda: {"dock": stats},
            outbox=lambda: OutboxStats(4, 4000, clock.time() - 30, 9, 0, 0, 1),
            drain=lambda: DrainStats(2, 8, 5000, 1, 0),
            connected=lambda: True,
            disk_path=tmp_path,
            disk_usage=lambda _: (1000, 900, 100),
            lane=lane,
            thermal_root=tmp_path / "thermal",
        )
        collector.collect()
        stats.processed, stats.frames, stats.skipped_motion = 30, 32, 10
        stats.inference_ms.extend([7.0] * 20)
        clock.advance(2.0)
        collector.collect()
    values = {(i.key.name, i.key.dims): getattr(i, "value", None) for i in reg.instruments()}
    cam = (("camera", "dock"), ("device", "d1"))
    dev = (("device", "d1"),)
    assert values[("FramesProcessed", cam)] == 30
    assert values[("CameraFps", cam)] == 10.0  # 20 frames in 2 s
    assert values[("MotionSkipRatio", cam)] == 0.5  # 10 of the 20 new frames skipped
    assert values[("FramesSkippedMotion", cam)] == 10
    assert values[("OutboxDepth", dev)] == 4
    assert values[("OutboxOldestAge", dev)] == 30.0
    assert values[("UplinkBytes", dev)] == 5000
    assert values[("DiskFreePercent", dev)] == 10.0
    assert values[("MetricsBacklog", dev)] == 1
    assert values[("DeviceTemperature", (("device", "d1"), ("zone", "cpu-thermal")))] == 48.5
    assert reg.gauge("ProcessRss", "Bytes").value > 0
    hist = reg.histogram("InferenceTime", camera="dock")
    assert hist.count == 30  # 10 then the 20 new ones, none twice
    assert hist.quantile(0.95) == 7.0
