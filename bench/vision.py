"""Vision figures side by side in one run: P1, P2, P3 (estimate) and P6 (docs/benchmarks.md).

    python bench/vision.py [--json] [--clip FILE] [--model NAME|FILE] [--soak-video-s 1800]
        [--only p1|p2|p3|p6] [--p1-baseline DIR] [--p3-trial-s 15] [--p3-start 4]
        [--p3-modes ungated,gated] [--p3-stagger]

* P1: detect-every-frame pipeline fps vs the invoke-only bound vs a naive loop (the children
  of ``bench/pipeline.py``, same model and clip, median of interleaved rounds).
* P2: CPU seconds (user + system of this process) per minute of video at 10 fps, the clip
  replayed as fast as it decodes through decode -> [motion gate] -> detector -> rules, gated vs
  always-detect; event recall = gated starts/ends matching an always-detect one within 1 s.
  CPU seconds do not depend on pacing, so the replay need not run in real time. A third pass
  adds ``motion.crop`` (detections of new small motion on a window around it).
* P3: streams of 10 fps this machine sustains with <= 1 % of frames dropped: N cameras replay
  the clip in real time (``realtime: true, loop: true``, ``max_lag_s: 0.5``) through one
  EdgeApp sharing one detector, for ``--p3-trial-s`` seconds per N; N starts at ``--p3-start``
  and doubles until the drops pass 1 %, then bisects, per mode (``--p3-modes``). By default
  every camera plays the clip in step (all see each visitor at once: the worst case);
  ``--p3-stagger`` starts camera i at i / N of the clip (``start_s``), as unsynchronised
  cameras would be. Also printed: the estimate from P2's CPU cost per second of video.
* P6: RSS of the real daemon (``EdgeApp`` in a child process: motion gating, tamper, clips,
  snapshots, outbox, uplink to a closed port) replaying the clip looped for ``--soak-video-s``
  seconds of video time, as fast as it runs; see ``bench/soak.py``. Default model there: the
  daemon's default (``--soak-model``).

Defaults: the SSD v1 model and one-by-one-person-detection.mp4 from ../shared/realworld.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RW = REPO.parent / "shared" / "realworld"
CLIP = RW / "videos" / "one-by-one-person-detection.mp4"
MODEL = RW / "models" / "ssd_mobilenet_v1_coco_quant.tflite"
LABELS = REPO / "models" / "labels" / "coco_labels_v1.txt"
FPS = 10.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _replay(
    args: argparse.Namespace, gated: bool, detector: Any, motion: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One pass over the clip; returns CPU seconds, detector runs and the events' marks."""
    import cv2
    import numpy as np

    from edge_app.config import CameraConfig, MotionConfig, RuleConfig
    from edge_app.domain import Frame, ModelRef, Phase
    from edge_app.vision.crop import motion_window, to_frame
    from edge_app.vision.motion import DetectionGate
    from edge_app.vision.rules import EventContext, RuleEngine

    cam = CameraConfig.model_validate({"name": "b", "source": {"type": "file", "path": "x"}})
    rules = [
        RuleConfig(
            name="person",
            labels=["person"],
            min_score=0.5,
            min_frames=2,
            end_after_s=3.0,
            per_object=True,
        ),
        RuleConfig(
            name="presence", labels=["person"], min_score=0.5, min_frames=2, end_after_s=3.0
        ),
    ]
    engine = RuleEngine(cam, rules, EventContext("b", ModelRef("m", "x"), 1))
    gate = DetectionGate(MotionConfig(**(motion or {}))) if gated else None
    capture = cv2.VideoCapture(str(args.clip))
    marks: list[tuple[str, str, float]] = []
    runs = index = cropped = 0
    cpu0 = _cpu_s()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        t = index / FPS
        frame = Frame("b", index, t, 1.79e9 + t, np.asarray(image, np.uint8))
        index += 1
        if gate is not None and not gate.should_detect(t, frame.image, engine.busy):
            continue
        runs += 1
        window = None
        if gate is not None and gate.crop_region is not None:  # as CameraWorker._crop_window
            window = motion_window(
                gate.crop_region,
                frame.size,
                detector.input_size,
                max_share=gate.config.crop_max_share,
            )
        if window is None:
            found = detector.detect(frame.image)
        else:
            cropped += 1
            x, y, w, h = window
            found = to_frame(detector.detect(frame.image[y : y + h, x : x + w]), window, frame.size)
        for e in engine.update(frame, found):
            if e.phase is not Phase.UPDATE:
                marks.append((e.rule, e.phase.value, e.mono))
    capture.release()
    last = (index - 1) / FPS
    for e in engine.finish(last, 1.79e9 + last):  # the clip ends: open episodes end here
        marks.append((e.rule, e.phase.value, e.mono))
    cpu = _cpu_s() - cpu0
    return {
        "cpu_s": cpu,
        "frames": index,
        "detector_runs": runs,
        "cropped": cropped,
        "marks": marks,
    }


def _recall(always: dict[str, Any], gated: dict[str, Any]) -> float:
    """Share of always-detect's starts/ends that the gated run has too, within 1 s."""
    found = sum(
        any(r == rule and p == phase and abs(m - mono) <= 1.0 for r, p, m in gated["marks"])
        for rule, phase, mono in always["marks"]
    )
    return found / max(len(always["marks"]), 1)


def p2(args: argparse.Namespace) -> dict[str, Any]:
    from edge_app.vision import TFLiteDetector

    with TFLiteDetector(args.model, LABELS, threads=args.threads, score_threshold=0.3) as det:
        always = _replay(args, False, det)
        gated = _replay(args, True, det)
        crop = _replay(args, True, det, {"crop": True})
    minutes = always["frames"] / FPS / 60
    recall = _recall(always, gated)
    per_video_s = {
        k: v["cpu_s"] / (v["frames"] / FPS) for k, v in (("always", always), ("gated", gated))
    }
    cores = os.cpu_count() or 1
    return {
        "frames": always["frames"],
        "cpu_s_per_min_always": always["cpu_s"] / minutes,
        "cpu_s_per_min_gated": gated["cpu_s"] / minutes,
        "p2_cpu_fraction": gated["cpu_s"] / always["cpu_s"],
        "p2_event_recall": recall,
        "events_always": len(always["marks"]),
        "events_gated": len(gated["marks"]),
        "detector_runs_always": always["detector_runs"],
        "detector_runs_gated": gated["detector_runs"],
        # the same gate with motion.crop: detections of new small motion on a window
        "p2_cpu_fraction_crop": crop["cpu_s"] / always["cpu_s"],
        "p2_event_recall_crop": _recall(always, crop),
        "detector_runs_crop": crop["detector_runs"],
        "detector_runs_cropped": crop["cropped"],
        # 99 % of the cores' time, divided by one stream's CPU per second of video
        "p3_estimate_ungated": int(cores * 0.99 / per_video_s["always"]),
        "p3_estimate_gated": int(cores * 0.99 / per_video_s["gated"]),
    }


def p6(args: argparse.Namespace) -> dict[str, Any]:
    from bench.soak import run_soak

    r = run_soak(args.soak_video_s, args.soak_model, args.clip, args.threads)
    r.pop("rss_series")
    return r


def _clip_s(clip: Path) -> float:
    import cv2

    capture = cv2.VideoCapture(str(clip))
    seconds = capture.get(cv2.CAP_PROP_FRAME_COUNT) / (capture.get(cv2.CAP_PROP_FPS) or FPS)
    capture.release()
    return float(seconds)


def p3_trial(args: argparse.Namespace, streams: int, gated: bool) -> dict[str, Any]:
    """One EdgeApp with ``streams`` real-time cameras for ``p3_trial_s``; frames and drops.

    With ``--p3-stagger`` camera i starts i / streams of the way into the clip (``start_s``),
    as unsynchronised real cameras would; otherwise every camera plays the clip in step.
    """
    import tempfile
    import threading

    from edge_app.app import EdgeApp
    from edge_app.config import parse_config

    clip_s = _clip_s(args.clip) if args.p3_stagger else 0.0
    source = {"type": "file", "path": str(args.clip), "realtime": True, "loop": True}
    camera: dict[str, Any] = {"max_lag_s": 0.5}
    if gated:
        camera["motion"] = {}
    cameras = [
        {"name": f"cam{i}", "source": {**source, "start_s": round(i * clip_s / streams, 1)}}
        | camera
        for i in range(streams)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(
            {
                "device": {"thing_name": "bench", "data_dir": tmp},
                "cameras": cameras,
                "detector": {
                    "model": str(args.model),
                    "labels": str(LABELS),
                    "threads": args.threads,
                    "score_threshold": 0.3,
                },
                "rules": [{"name": "person", "labels": ["person"], "per_object": True}],
                "uplink": {"enabled": False},
                "health": {"enabled": False},
                "log_level": "error",
            }
        )
        app = EdgeApp(config)
        app.start()
        stop = threading.Event()
        stop.wait(args.p3_trial_s)  # the clips loop forever: the trial ends by time
        app.request_stop()
        stats = app.camera_stats()
        frames = sum(s.frames for s in stats.values())
        dropped = sum(s.dropped_late for s in stats.values())
        worst = max(s.dropped_late / max(s.frames, 1) for s in stats.values())
        app.stop()
    return {
        "frames": frames,
        "dropped": dropped,
        "drop_fraction": dropped / max(frames, 1),
        "worst_camera": worst,
    }


def p3(args: argparse.Namespace) -> dict[str, Any]:
    """Largest N (of a doubling-then-bisecting search) with <= 1 % drops, per mode."""
    out: dict[str, Any] = {}
    for gated in [m == "gated" for m in args.p3_modes.split(",")]:
        good, bad, n, trials = 0, None, args.p3_start, []
        while bad is None or bad - good > max(1, good // 8):
            result = p3_trial(args, n, gated)
            ok = result["drop_fraction"] <= 0.01
            trials.append((n, round(result["drop_fraction"], 4)))
            good, bad = (n, bad) if ok else (good, n)
            if bad is None:
                n *= 2
            else:
                n = (good + bad) // 2
            if n in (good, bad) or len(trials) >= args.p3_max_trials:
                break
        key = "gated" if gated else "ungated"
        out[f"p3_streams_{key}"] = good
        out[f"p3_trials_{key}"] = trials
    out["p3_stagger"] = args.p3_stagger
    return out


def _pipeline_child(mode: str, args: argparse.Namespace, root: Path = REPO) -> dict[str, Any]:
    """One measurement of ``root``'s ``bench/pipeline.py`` (its own process: clean RSS and
    caches; ``root`` another checkout, e.g. main, to compare its pipeline side by side)."""
    import subprocess

    cmd = [
        sys.executable,
        str(root / "bench" / "pipeline.py"),
        "--child",
        mode,
        "--clip",
        str(args.clip),
        "--model",
        str(args.model),
        "--threads",
        str(args.threads),
    ]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"bench child {mode} ({root}) failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def p1(args: argparse.Namespace) -> dict[str, Any]:
    import statistics

    rounds = []
    for _ in range(args.rounds):  # interleaved: a shared machine drifts between rounds
        one = {m: _pipeline_child(m, args) for m in ("bound", "naive", "pipeline")}
        if args.p1_baseline is not None:
            one["baseline"] = _pipeline_child("pipeline", args, args.p1_baseline)
        rounds.append(one)

    def med(mode: str) -> float:
        return float(statistics.median(r[mode]["fps"] for r in rounds))

    out = {
        "bound_fps": med("bound"),
        "naive_fps": med("naive"),
        "pipeline_fps": med("pipeline"),
        "p1_ratio": med("pipeline") / med("bound"),
        "naive_ratio": med("naive") / med("bound"),
    }
    if args.p1_baseline is not None:
        out["baseline_ratio"] = med("baseline") / med("bound")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="P1 interleaved rounds")
    parser.add_argument(
        "--p1-baseline", type=Path, help="P1: also run this checkout's pipeline (e.g. main)"
    )
    parser.add_argument(
        "--soak-video-s", type=float, default=1800.0, help="P6 soak, seconds of video"
    )
    parser.add_argument("--soak-model", default="ssd_mobilenet_v2_coco", help="P6 model")
    parser.add_argument("--p3-trial-s", type=float, default=15.0, help="P3 seconds per N")
    parser.add_argument("--p3-max-trials", type=int, default=6, help="P3 trials per mode")
    parser.add_argument("--p3-start", type=int, default=4, help="P3 first N (then doubled)")
    parser.add_argument(
        "--p3-stagger", action="store_true", help="P3 cameras start spread over the clip"
    )
    parser.add_argument("--p3-modes", default="ungated,gated", help="P3 modes to search")
    parser.add_argument("--only", choices=["p1", "p2", "p3", "p6"], action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.clip.is_file() or not args.model.is_file():
        print(f"need {args.clip} and {args.model} (../shared/realworld)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"clip": args.clip.name, "model": args.model.name}
    for name, figure in (("p1", p1), ("p2", p2), ("p3", p3), ("p6", p6)):
        if args.only is None or name in args.only:
            result |= figure(args)
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    if args.json:
        print(json.dumps(rounded))
        return 0
    r = rounded
    rows = _rows(r)
    print(f"{r['clip']}, {FPS:g} fps, {r['model']}, {args.threads} threads")
    print(f"| {'figure':<28} | {'value':<44} | {'goal':<16} |")
    print(f"|{'-' * 30}|{'-' * 46}|{'-' * 18}|")
    for name, value, goal in rows:
        print(f"| {name:<28} | {value:<44} | {goal:<16} |")
    return 0


def _rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if "p1_ratio" in r:
        rows += [
            ("P1 invoke-only bound", f"{r['bound_fps']:.1f} fps", ""),
            ("P1 naive loop", f"{r['naive_fps']:.1f} fps ({r['naive_ratio']:.3f} x bound)", ""),
            (
                "P1 pipeline",
                f"{r['pipeline_fps']:.1f} fps ({r['p1_ratio']:.3f} x bound)",
                ">= 0.97 x bound",
            ),
        ]
        if "baseline_ratio" in r:
            rows.append(("P1 baseline pipeline", f"{r['baseline_ratio']:.3f} x bound", ""))
    if "p2_cpu_fraction" in r:
        rows += [
            ("P2 CPU s / min, always", f"{r['cpu_s_per_min_always']:.1f}", ""),
            ("P2 CPU s / min, gated", f"{r['cpu_s_per_min_gated']:.1f}", ""),
            ("P2 gated / always", f"{r['p2_cpu_fraction']:.3f}", "<= 0.25"),
            ("P2 detector runs", f"{r['detector_runs_gated']} / {r['detector_runs_always']}", ""),
            (
                "P2 event recall",
                f"{r['p2_event_recall']:.3f} ({r['events_gated']} vs {r['events_always']} events)",
                "1.0",
            ),
            (
                "P2 gated + crop / always",
                f"{r['p2_cpu_fraction_crop']:.3f} (recall {r['p2_event_recall_crop']:.3f}, "
                f"{r['detector_runs_cropped']} of {r['detector_runs_crop']} runs cropped)",
                "",
            ),
            ("P3 estimate from P2, gated", str(r["p3_estimate_gated"]), ""),
            ("P3 estimate from P2, ungated", str(r["p3_estimate_ungated"]), ""),
        ]
    step = "staggered" if r.get("p3_stagger") else "in step"
    if "p3_streams_gated" in r:
        rows.append(
            (
                f"P3 streams <= 1 % drops, gated, {step}",
                f"{r['p3_streams_gated']} {r['p3_trials_gated']}",
                ">= 16",
            )
        )
    if "p3_streams_ungated" in r:
        rows.append(
            (
                f"P3 ... ungated, {step}",
                f"{r['p3_streams_ungated']} {r['p3_trials_ungated']}",
                "",
            )
        )
    if "rss_mb" in r:
        rows += [
            ("P6 RSS max", f"{r['rss_mb']:.1f} MB", "<= 150 MB"),
            (
                "P6 RSS drift",
                f"{r['rss_drift_mb']:+.1f} MB over {r['soak_video_s']:.0f} s of video "
                f"({r['soak_wall_s']:.0f} s wall)",
                "<= 5 MB (30 min)",
            ),
        ]
    return rows


if __name__ == "__main__":
    sys.exit(main())
