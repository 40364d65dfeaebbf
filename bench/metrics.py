"""Cost of telemetry: frame-loop frames/s with and without metrics, and a day's backlog size.

    python bench/metrics.py [--json] [--model NAME|FILE] [--rounds 3] [--seconds 20]

Part 1 runs the whole app (default model, uplink off) on a generated clip, as fast as frames
decode, alternately with telemetry on (collector every 1 s, one-second aggregates into the
metrics lane, EMF file sink, health endpoint) and off; the median of interleaved rounds is shown
side by side (runs drift by several % on 2 cores). Part 2 aggregates one simulated day of one
camera, minute by minute, into the metrics lane with the network down, and reports its rows
and bytes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_app(clip: Path, model: str, data: Path, *, metrics: bool) -> tuple[float, float]:
    """Frames/s of one run, and the telemetry thread's CPU ms per second of the run."""
    from edge_app.app import EdgeApp
    from edge_app.config import parse_config

    config = parse_config(
        {
            "device": {"thing_name": "bench", "data_dir": str(data)},
            "cameras": [{"name": "cam", "source": {"type": "file", "path": str(clip)}}],
            "detector": {"model": model},
            "uplink": {"enabled": False},
            "metrics": {"enabled": metrics, "sink": "file", "sample_s": 1.0, "period_s": 1.0},
            "health": {"enabled": metrics, "port": 0},
            "log_level": "warning",
        }
    )
    app = EdgeApp(config)
    t0 = time.perf_counter()
    app.start()
    app.wait()
    elapsed = time.perf_counter() - t0
    frames = app.stats().frames
    telemetry = app.telemetry
    app.stop()
    cpu_ms = telemetry.loop.cpu_s * 1000 / elapsed if telemetry is not None else 0.0
    return frames / elapsed, cpu_ms


def day_backlog(data: Path) -> dict[str, Any]:
    from edge_app.clock import FakeClock
    from edge_app.outbox import LaneStore, Outbox, OutboxStats
    from edge_app.pipeline import CameraStats
    from edge_app.telemetry import Collector, MinuteAggregator, Registry, TelemetryLoop

    clock = FakeClock(wall=1_790_000_000.0)
    db = data / "outbox.db"
    stats = CameraStats()
    reg = Registry({"device": "bench"})
    with (
        Outbox(db, clock=clock, device="bench", max_bytes=1 << 30, max_age_s=1e9) as outbox,
        LaneStore(db, "metrics") as lane,
    ):
        latest: OutboxStats = outbox.stats()
        collector = Collector(
            reg,
            clock=clock,
            cameras=lambda: {"cam": stats},
            outbox=lambda: latest,
            drain=lambda: None,
            connected=lambda: False,
            disk_path=data,
            lane=lane,
        )
        reg.counter("Events", rule="intrusion", severity="high")
        reg.counter("Events", rule="loitering", severity="medium")
        loop = TelemetryLoop(
            aggregator=MinuteAggregator(reg),
            lane=lane,
            sink=None,  # offline all day
            clock=clock,
            stop=threading.Event(),
            collect=collector.collect,
        )
        for _ in range(24 * 60 * 6):  # a sample every 10 s for a day
            stats.frames += 150
            stats.processed += 100
            stats.inference_ms.extend([12.0] * 100)
            loop.tick()
            clock.advance(10.0)
        lane_stats = lane.stats()
    return {
        "rows": lane_stats.rows,
        "body_bytes": lane_stats.bytes,
        "file_bytes": db.stat().st_size + sum(p.stat().st_size for p in data.glob("outbox.db-*")),
        "metrics_per_minute": lane_stats.rows // (24 * 60),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="ssd_mobilenet_v2_coco")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length (10 fps)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from simulator.scene import generate_scene

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = root / "clip.mp4"
        generate_scene(clip, root / "truth.json", seconds=args.seconds, seed=0)
        fps: dict[str, list[float]] = {"off": [], "on": []}
        cpu: list[float] = []
        for i in range(args.rounds):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                data = root / f"run-{i}-{mode}"
                rate, cpu_ms = run_app(clip, args.model, data, metrics=mode == "on")
                fps[mode].append(rate)
                if mode == "on":
                    cpu.append(cpu_ms)
        backlog = day_backlog(root / "day")
    off, on = statistics.median(fps["off"]), statistics.median(fps["on"])
    result = {
        "fps_without_metrics": round(off, 2),
        "fps_with_metrics": round(on, 2),
        "overhead_percent": round(100.0 * (off - on) / off, 2),
        "fps_runs": {k: [round(v, 1) for v in vs] for k, vs in fps.items()},
        "telemetry_cpu_ms_per_s": round(statistics.median(cpu), 2),
        "rounds": args.rounds,
        "day_backlog_one_camera": backlog,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'frame loop (median of ' + str(args.rounds) + ')':<34}{'without':>10}{'with':>10}")
    print(f"{'  frames/s':<34}{off:>10.2f}{on:>10.2f}")
    print(f"{'  overhead':<34}{result['overhead_percent']:>19.2f} %")
    print(f"{'  each run, off':<34}{result['fps_runs']['off']}")
    print(f"{'  each run, on':<34}{result['fps_runs']['on']}")
    print(f"{'  telemetry thread CPU, ms per s':<34}{result['telemetry_cpu_ms_per_s']:>20.2f}")
    print("a day offline, one camera")
    for key in ("rows", "body_bytes", "file_bytes", "metrics_per_minute"):
        print(f"  {key:<32}{backlog[key]:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
