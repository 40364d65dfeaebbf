"""P6: RSS of the real daemon over a long replay soak, measured in a child process.

    python bench/soak.py [--soak-video-s 1800] [--model NAME|FILE] [--clip FILE] [--json]

The child runs ``EdgeApp`` (the composition root ``edge-app run`` uses) on one camera replaying
the clip looped, as fast as it decodes (not real time), for ``--soak-video-s`` seconds of VIDEO
time (frames / the clip's fps), with what a deployed camera has on: motion gating, tamper
checks, a per-object person rule, snapshots, pre/post clips, the outbox, telemetry. The uplink
is off (nothing to deliver to; events stay in the outbox). The child's main thread is idle in
``edge-app run``; here it reads ``/proc/self/statm`` once per wall second and stops the app at
the target. Figures (MB = 2**20 bytes):

* ``rss_mb``: the peak RSS of the child (the kernel's high-water mark ``VmHWM``, so a peak
  between samples counts; not ``ru_maxrss``, which keeps the parent's RSS at fork across exec);
* ``rss_drift_mb``: median RSS of the last quarter of the samples minus the median of the
  first quarter, both after the warm-up (the first pass of the clip: every buffer, cache and
  queue has then been filled once).

``bench/vision.py`` calls ``run_soak`` for its P6 row.
"""

from __future__ import annotations

__all__ = ["run_soak"]

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CLIP = REPO.parent / "shared" / "realworld" / "videos" / "one-by-one-person-detection.mp4"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark (Linux ``VmHWM``), MB; starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: P6 needs Linux")


def _config(args: argparse.Namespace, data_dir: Path) -> Any:
    from edge_app.config import UplinkConfig, parse_config

    # "to nothing": a loopback port nobody listens on, so the MQTT client, drain loop and
    # shadow client run and back off as on a device that is offline. Plain TCP must be asked
    # for; a tree from before that switch (--compare) would refuse the key.
    uplink: dict[str, Any] = {"host": "127.0.0.1", "port": args.port}
    if "insecure_plaintext" in UplinkConfig.model_fields:
        uplink["insecure_plaintext"] = True

    return parse_config(
        {
            "device": {"thing_name": "soak", "data_dir": str(data_dir)},
            "cameras": [
                {
                    "name": "soak",
                    "source": {"type": "file", "path": str(args.clip), "loop": True},
                }
                | {part: {} for part in ("motion", "tamper", "clips") if part not in args.without}
            ],
            "detector": {"model": args.model, "threads": args.threads},
            "rules": [
                {"name": "person", "labels": ["person"], "min_score": 0.5, "per_object": True}
            ],
            "uplink": uplink,
            "log_level": "warning",
        }
    )


def child(args: argparse.Namespace) -> dict[str, Any]:
    """The daemon under test; returns its samples and counters."""
    sys.path.insert(0, str(args.code.resolve()))  # the tree under test (--compare: main's)
    import cv2

    from edge_app.app import EdgeApp

    cap = cv2.VideoCapture(str(args.clip))
    clip_fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    clip_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    target = int(args.soak_video_s * clip_fps)
    samples: list[tuple[float, float]] = []  # (video seconds, RSS MB)
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # reserved, never listened on: connects are refused
        args.port = sock.getsockname()[1]
        app = EdgeApp(_config(args, Path(tmp)))
        t0 = time.monotonic()
        app.start()
        frames = 0
        while frames < target:
            time.sleep(1.0)
            frames = sum(c.frames for c in app.stats().cameras.values())
            samples.append((frames / clip_fps, _rss_mb()))
        stats = app.stats()
        app.stop()
        wall = time.monotonic() - t0
    warm = [rss for video_s, rss in samples if video_s > clip_frames / clip_fps]
    warm = warm or [rss for _, rss in samples]  # a soak shorter than one pass: all samples
    quarter = max(1, len(warm) // 4)
    return {
        "soak_video_s": round(frames / clip_fps, 1),
        "soak_wall_s": round(wall, 1),
        "soak_model": args.model,
        # VmHWM is updated lazily; a sample may have seen a little more
        "rss_mb": max(_peak_rss_mb(), *(rss for _, rss in samples)),
        "rss_sampled_max_mb": max(rss for _, rss in samples),
        "rss_warm_first_mb": statistics.median(warm[:quarter]),
        "rss_warm_last_mb": statistics.median(warm[-quarter:]),
        "rss_drift_mb": statistics.median(warm[-quarter:]) - statistics.median(warm[:quarter]),
        "soak_samples": len(samples),
        "soak_detector_runs": sum(c.processed for c in stats.cameras.values()),
        "soak_events": stats.last_seq,
        "rss_series": [(round(v, 1), round(r, 1)) for v, r in samples],
    }


def run_soak(
    soak_video_s: float,
    model: str,
    clip: Path = CLIP,
    threads: int = 2,
    without: str = "",
    code: Path = REPO,
) -> dict[str, Any]:
    """Run the child on the edge_app tree ``code`` and return its figures (module docstring)."""
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--json",
        f"--soak-video-s={soak_video_s}",
        f"--model={model}",
        f"--clip={clip}",
        f"--threads={threads}",
        f"--without={without}",
        f"--code={code}",
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


_ROWS = (
    ("rss_mb", "peak RSS, MB"),
    ("rss_drift_mb", "drift after warm-up, MB"),
    ("rss_warm_first_mb", "median RSS, first quarter"),
    ("rss_warm_last_mb", "median RSS, last quarter"),
    ("soak_video_s", "video seconds replayed"),
    ("soak_wall_s", "wall seconds"),
    ("soak_detector_runs", "detector runs"),
    ("soak_events", "events stored"),
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--soak-video-s", type=float, default=1800.0)
    parser.add_argument("--model", default="ssd_mobilenet_v2_coco", help="name or .tflite file")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--without",
        default="",
        help="comma-separated parts to leave off (motion, tamper, clips): the breakdown",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="TREE",
        help="also soak the edge_app of this checkout (e.g. ../main) first: before / after",
    )
    parser.add_argument("--series", action="store_true", help="keep (video s, RSS MB) samples")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.clip.is_file():
        print(f"need {args.clip} (../shared/realworld)", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(child(args)))
        return 0
    trees = {"before": args.compare, "after": REPO} if args.compare else {"this tree": REPO}
    runs = {
        name: run_soak(args.soak_video_s, args.model, args.clip, args.threads, args.without, tree)
        for name, tree in trees.items()
    }
    for r in runs.values():
        if not args.series:
            r.pop("rss_series")
    if args.json:
        print(json.dumps(runs if args.compare else runs["this tree"]))
        return 0
    print(f"{args.clip.name} looped, {args.model}, {args.threads} threads, as fast as it runs")
    print(f"| {'':<28} | " + " | ".join(f"{name:>10}" for name in runs) + " |")
    for key, label in _ROWS:
        cells = [r.get(key) for r in runs.values()]
        text = [f"{c:>10.1f}" if isinstance(c, float) else f"{c!s:>10}" for c in cells]
        print(f"| {label:<28} | " + " | ".join(text) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
