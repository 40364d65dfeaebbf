"""Frame-loop throughput: invoke-only bound vs a naive loop vs the edge_app pipeline.

    python bench/pipeline.py [--json] [--clip FILE] [--model NAME|FILE] [--threads 2]

Each measurement runs in its own process (clean peak RSS, no warm caches shared). Defaults:
the pulled default model and ../shared/realworld/videos/one-by-one-person-detection.mp4.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "realworld" / "videos" / "one-by-one-person-detection.mp4"


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark, MB (Linux ``VmHWM``: it starts afresh at exec, where
    ``ru_maxrss`` would keep the parent's RSS at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this bench needs Linux")


def _model(name: str) -> tuple[Path, Path | None]:
    from edge_app.models import resolve_model

    resolved = resolve_model(name)
    return resolved.path, resolved.labels


def _interpreter(args: argparse.Namespace) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    path, _ = _model(args.model)
    interp = Interpreter(model_path=str(path), num_threads=args.threads)
    interp.allocate_tensors()
    return interp


def child_bound(args: argparse.Namespace) -> dict[str, Any]:
    """Invoke only: the input tensor is filled once; this is the ceiling of any frame loop."""
    import cv2
    import numpy as np

    interp = _interpreter(args)
    inp = interp.get_input_details()[0]
    h, w = int(inp["shape"][1]), int(inp["shape"][2])
    cap = cv2.VideoCapture(str(args.clip))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, image = cap.read()
    assert ok, args.clip
    rgb = cv2.cvtColor(cv2.resize(image, (w, h)), cv2.COLOR_BGR2RGB)
    interp.set_tensor(inp["index"], np.expand_dims(rgb, 0))
    interp.invoke()  # warm-up, as the detector does at load
    t0 = time.perf_counter()
    for _ in range(frames):
        interp.invoke()
    elapsed = time.perf_counter() - t0
    return {"frames": frames, "fps": frames / elapsed, "rss_mb": _peak_rss_mb()}


def child_naive(args: argparse.Namespace) -> dict[str, Any]:
    """What most tutorials write: read -> resize -> colour -> set_tensor -> invoke -> decode."""
    import cv2
    import numpy as np

    interp = _interpreter(args)
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    h, w = int(inp["shape"][1]), int(inp["shape"][2])
    cap = cv2.VideoCapture(str(args.clip))
    frames = detections = 0
    t0 = time.perf_counter()
    while True:
        ok, image = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(cv2.resize(image, (w, h)), cv2.COLOR_BGR2RGB)
        interp.set_tensor(inp["index"], np.expand_dims(rgb, 0))
        interp.invoke()
        boxes, classes, scores, count = (interp.get_tensor(o["index"]) for o in outs[:4])
        n = int(count[0])
        keep = scores[0, :n] >= 0.5
        detections += int(keep.sum())
        frames += 1
        _ = boxes[0, :n][keep], classes[0, :n][keep]
    elapsed = time.perf_counter() - t0
    return {"frames": frames, "fps": frames / elapsed, "rss_mb": _peak_rss_mb(), "dets": detections}


def _app_config(args: argparse.Namespace, data_dir: Path) -> Any:
    from edge_app.config import parse_config

    return parse_config(
        {
            "device": {"thing_name": "bench", "data_dir": str(data_dir)},
            "cameras": [{"name": "bench", "source": {"type": "file", "path": str(args.clip)}}],
            "detector": {"model": args.model, "threads": args.threads},
            "rules": [{"name": "person", "labels": ["person"], "min_score": 0.5}],
            "uplink": {"enabled": False},
            "log_level": "warning",
        }
    )


def child_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The real appliance (uplink off), detecting every frame of the clip."""
    from edge_app.app import EdgeApp

    with tempfile.TemporaryDirectory() as tmp:
        app = EdgeApp(_app_config(args, Path(tmp)))
        app.start()
        t0 = time.perf_counter()
        app.wait()
        elapsed = time.perf_counter() - t0
        stats = app.stats()
        app.stop()
    return {
        "frames": stats.frames,
        "fps": stats.frames / elapsed,
        "rss_mb": _peak_rss_mb(),
        "events": stats.events,
    }


def child_startup(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds from the parent's spawn to the first frame through the detector."""
    from edge_app.app import EdgeApp

    with tempfile.TemporaryDirectory() as tmp:
        app = EdgeApp(_app_config(args, Path(tmp)))
        app.start()
        while app.stats().frames == 0:
            time.sleep(0.001)
        first = time.time() - args.spawned_at
        app.request_stop()
        app.stop()
    return {"first_detection_s": first, "rss_mb": _peak_rss_mb()}


CHILDREN = {
    "bound": child_bound,
    "naive": child_naive,
    "pipeline": child_pipeline,
    "startup": child_startup,
}


def run_child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--clip",
        str(args.clip),
        "--model",
        args.model,
        "--threads",
        str(args.threads),
        "--spawned-at",
        str(time.time()),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench child {mode} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--model", default="ssd_mobilenet_v2_coco")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    if not args.clip.is_file():
        print(f"clip not found: {args.clip} (../shared/realworld is needed)", file=sys.stderr)
        return 2
    # interleaved rounds, median of each: a 2-core machine drifts by several % between runs
    rounds = [
        {mode: run_child(mode, args) for mode in ("bound", "naive", "pipeline", "startup")}
        for _ in range(args.rounds)
    ]

    def median(mode: str, key: str) -> float:
        return float(statistics.median(r[mode][key] for r in rounds))

    bound = {"fps": median("bound", "fps")}
    naive = {"fps": median("naive", "fps"), "rss_mb": median("naive", "rss_mb")}
    pipeline = {
        "fps": median("pipeline", "fps"),
        "rss_mb": median("pipeline", "rss_mb"),
        "frames": rounds[0]["pipeline"]["frames"],
        "events": rounds[0]["pipeline"]["events"],
    }
    startup = {"first_detection_s": median("startup", "first_detection_s")}
    result = {
        "clip": args.clip.name,
        "model": args.model,
        "threads": args.threads,
        "frames": pipeline["frames"],
        "bound_fps": round(bound["fps"], 1),
        "naive_fps": round(naive["fps"], 1),
        "pipeline_fps": round(pipeline["fps"], 1),
        "naive_ratio": round(naive["fps"] / bound["fps"], 3),
        "pipeline_ratio": round(pipeline["fps"] / bound["fps"], 3),
        "pipeline_peak_rss_mb": round(pipeline["rss_mb"], 1),
        "naive_peak_rss_mb": round(naive["rss_mb"], 1),
        "first_detection_s": round(startup["first_detection_s"], 2),
        "events": pipeline["events"],
    }
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [
        ("invoke-only bound", f"{result['bound_fps']} fps", "1.000", ""),
        ("naive loop", f"{result['naive_fps']} fps", f"{result['naive_ratio']:.3f}", ""),
        (
            "edge_app pipeline",
            f"{result['pipeline_fps']} fps",
            f"{result['pipeline_ratio']:.3f}",
            "goal >= 0.97",
        ),
        ("peak RSS, pipeline", f"{result['pipeline_peak_rss_mb']} MB", "", "goal <= 150 MB"),
        ("peak RSS, naive", f"{result['naive_peak_rss_mb']} MB", "", ""),
        ("start -> first detection", f"{result['first_detection_s']} s", "", "goal <= 3 s"),
    ]
    print(
        f"{args.clip.name}, {result['frames']} frames, {args.model}, {args.threads} threads, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"| {'measure':<26} | {'value':>12} | {'x bound':>7} | {'goal':<14} |")
    print(f"|{'-' * 28}|{'-' * 14}|{'-' * 9}|{'-' * 16}|")
    for name, value, ratio, goal in rows:
        print(f"| {name:<26} | {value:>12} | {ratio:>7} | {goal:<14} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
