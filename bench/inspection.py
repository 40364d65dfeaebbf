"""Visual inspection figures in one run (docs/inspection.md, docs/benchmarks.md).

    python bench/inspection.py [--json] [--hours 1.0] [--defects 100]

* I1 fit time for 300 normal frames: ``fit_anomaly`` on frames 0..99 of bottle-detection.mp4
  (three bottles, no hands) taken three times over (the clip has ~120 frames of that scene).
* I2 frame-level AUROC and localisation on the injected-defect set: a model fitted on frames
  0..99; ``--defects`` frames 100..120 with one injected defect each (foreign object pasted
  from another real photo, scratch, missing bottle, recoloured cap, in turn) against frames
  100..120 as they are; localisation = the event box (the peak region) covers the defect's
  centre.
* I3 false alarms on normal footage: the real camera loop (``CameraWorker``, anomaly stage,
  a rule ``labels: [anomaly], min_frames: 2``) on frames 80..120 (never in the bank) looped at
  5 frames/s of frame time, every frame inspected, for ``--hours`` of video time; anomaly
  events per hour.
* I4 cost per inspected frame (ms, median of the loop's ``inspect_ms``) and CPU share at 5
  inspected frames/s (CPU seconds of this process per second of video time, in cores, during
  I3; the loop runs as fast as it can, so CPU seconds per video second is what 5 frames/s in
  real time would cost). Also the real MobileNet v2 classifier's ms per frame.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RW = REPO.parent / "shared" / "realworld"
CLIP = RW / "videos" / "bottle-detection.mp4"
EXTRACTOR = RW / "models" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
CLASSIFIER = RW / "models" / "mobilenet_v2_1.0_224_quant.tflite"
DONOR = RW / "images" / "kite_and_cold.jpg"
RATE = 5.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _frames() -> list[Any]:
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(str(CLIP))
    frames = [np.asarray(capture.read()[1], np.uint8) for _ in range(121)]
    capture.release()
    return frames


class _Loop:
    """``images`` looped at ``RATE`` frames/s of frame time for ``seconds``."""

    camera = "line"
    dropped = 0

    def __init__(self, images: list[Any], seconds: float) -> None:
        self._images, self._count = images, int(seconds * RATE)

    def frames(self, stop: threading.Event) -> Iterator[Any]:
        from edge_app.domain import Frame

        for i in range(self._count):
            image = self._images[i % len(self._images)]
            yield Frame("line", i, i / RATE, 1_790_000_000.0 + i / RATE, image)

    def close(self) -> None:
        pass


class _NullDetector:
    """Sees nothing: the figures are the anomaly stage's."""

    input_size = (300, 300)
    threads = 1
    runtime_name = "none"
    score_threshold = 0.5

    def __init__(self) -> None:
        from edge_app.domain import ModelRef
        from edge_app.vision.labels import LabelMap

        self.model = ModelRef("none", "0" * 12)
        self.labels = LabelMap.empty()

    def set_score_threshold(self, value: float) -> None:
        self.score_threshold = value

    def preparer(self) -> None:
        return None

    def close(self) -> None:
        pass

    def detect(self, image: Any) -> Any:
        from edge_app.domain import Detections

        return Detections.empty()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--hours", type=float, default=1.0, help="video time of I3 (hours)")
    parser.add_argument("--defects", type=int, default=100, help="defect frames of I2")
    args = parser.parse_args()
    if not CLIP.is_file() or not EXTRACTOR.is_file():
        print(f"needs the real-world data at {RW}", file=sys.stderr)
        return 2

    import cv2
    import numpy as np

    from edge_app.clock import FakeClock
    from edge_app.config import ConfigSnapshot, parse_config
    from edge_app.domain import Event
    from edge_app.pipeline import CameraParts, CameraWorker, Runtime, RuntimeHolder
    from edge_app.vision.anomaly import AnomalyScorer
    from edge_app.vision.anomaly_fit import (
        FitOptions,
        Labelled,
        evaluate,
        fit_anomaly,
    )
    from edge_app.vision.classifier import Classifier
    from edge_app.vision.features import FeatureExtractor
    from tests.vision.defects import DEFECTS, inject

    frames = _frames()
    extractor = FeatureExtractor(EXTRACTOR)
    out: dict[str, Any] = {}

    started = time.perf_counter()
    fit_anomaly([("x3", frames[:100] * 3)], extractor, FitOptions())
    out["i1_fit_s_300_frames"] = round(time.perf_counter() - started, 2)

    model = fit_anomaly([("bottles", frames[:100])], extractor, FitOptions())
    scorer = AnomalyScorer(model, extractor)
    donor = np.asarray(cv2.imread(str(DONOR)), np.uint8)
    rng = np.random.default_rng(2026)
    kinds = list(DEFECTS)
    defects = []
    for i in range(args.defects):
        image, box = inject(frames[100 + i % 21], kinds[i % len(kinds)], rng, donor)
        defects.append(Labelled(image, (box,)))
    evaluation = evaluate(scorer, iter(frames[100:]), defects)
    out["i2"] = evaluation.as_dict()
    per_kind = {}
    for k, kind in enumerate(kinds):
        sub = defects[k :: len(kinds)]
        per_kind[kind] = evaluate(scorer, iter(frames[100:]), sub).as_dict()
    out["i2_per_kind"] = {
        k: {"auroc": v["auroc"], "localisation": v["localisation"], "detected": v["detected"]}
        for k, v in per_kind.items()
    }

    model_path = Path("/tmp") / f"edge-app-bench-{time.time_ns()}.npz"
    model.save(model_path)
    config = parse_config(
        {
            "device": {"thing_name": "bench"},
            "uplink": {"enabled": False},
            "cameras": [
                {
                    "name": "line",
                    "source": {"type": "usb"},
                    "anomaly": {
                        "model": str(model_path),
                        "extractor": str(EXTRACTOR),
                        "every_s": 1 / RATE,
                    },
                }
            ],
            "rules": [{"name": "defect", "labels": ["anomaly"], "min_frames": 2}],
        }
    )
    events: list[Event] = []

    def sink(event: Event) -> Event:
        events.append(event)
        return event

    seconds = args.hours * 3600.0
    live = RuntimeHolder(Runtime(ConfigSnapshot.of(config, "file", None), _NullDetector()))
    parts = CameraParts(_Loop(frames[80:], seconds), live, sink, threading.Event(), FakeClock())
    worker = CameraWorker(config.cameras[0], parts)
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    worker.run()
    cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
    model_path.unlink()
    starts = [e for e in events if e.phase.value == "start"]
    out["i3"] = {
        "video_hours": args.hours,
        "inspected": worker.stats.inspected,
        "anomaly_events": len(starts),
        "false_alarms_per_hour": round(len(starts) / args.hours, 2),
        "wall_s": round(wall, 1),
    }
    out["i4"] = {
        "ms_per_inspected_frame_median": round(statistics.median(worker.stats.inspect_ms), 2),
        "cpu_share_at_5_fps": round(cpu / seconds, 3),
    }
    classifier = Classifier(CLASSIFIER)
    classifier.top(frames[0], 3)
    t0 = time.perf_counter()
    for frame in frames[:50]:
        classifier.top(frame, 3)
    out["i4"]["classifier_ms_per_frame"] = round((time.perf_counter() - t0) / 50 * 1000, 2)

    if args.json:
        print(json.dumps(out))
        return 0
    e = out["i2"]
    print(f"I1 fit, 300 frames            {out['i1_fit_s_300_frames']} s")
    print(
        f"I2 frame AUROC                {e['auroc']}  ({e['defect_frames']} defect, "
        f"{e['normal_frames']} normal frames)"
    )
    print(f"I2 localisation               {e['localisation']:.1%}")
    print(f"I2 detected at threshold      {e['detected']:.1%}")
    print(f"I2 false alarms, normal       {e['false_alarm_rate']:.1%}")
    for kind, v in out["i2_per_kind"].items():
        print(
            f"   {kind:<10} AUROC {v['auroc']}, localisation {v['localisation']:.0%}, "
            f"detected {v['detected']:.0%}"
        )
    i3 = out["i3"]
    print(
        f"I3 false alarms per hour      {i3['false_alarms_per_hour']} ({i3['inspected']} "
        f"inspected frames over {i3['video_hours']} h of video)"
    )
    i4 = out["i4"]
    print(f"I4 ms per inspected frame     {i4['ms_per_inspected_frame_median']}")
    print(f"I4 CPU share at 5 frames/s    {i4['cpu_share_at_5_fps']} cores")
    print(f"   classifier ms per frame    {i4['classifier_ms_per_frame']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
