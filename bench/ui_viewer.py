"""Frame-loop speed and CPU with a live-view viewer connected vs without.

    python bench/ui_viewer.py [--json] [--clip FILE] [--frames 600] [--viewers 1]

Each run is its own process: the real app on the clip as fast as it decodes (no realtime
pacing, every frame to the default model), the status page on a free port. With viewers,
each fetches ``/ui/live/<camera>.jpg`` in a tight loop (a worst case: a browser waits for each
image to load); the throttle (``ui.live_fps``) bounds the encodes. Printed: frames/s of the
frame loop, process CPU seconds per frame and in total, JPEGs encoded and fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "realworld" / "videos" / "one-by-one-person-detection.mp4"


def _child(clip: Path, frames: int, viewers: int) -> dict[str, Any]:
    from edge_app.app import EdgeApp
    from edge_app.config import parse_config
    from simulator.broker import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(
            {
                "device": {"thing_name": "bench-ui", "data_dir": tmp},
                "cameras": [
                    {
                        "name": "cam",
                        "source": {"type": "file", "path": str(clip), "realtime": False},
                    }
                ],
                "rules": [{"name": "person", "labels": ["person"], "min_score": 0.5}],
                "uplink": {"enabled": False},
                "health": {"port": port},
                "log_level": "error",
            }
        )
        fetched = 0
        done = threading.Event()

        def view() -> None:
            nonlocal fetched
            url = f"http://127.0.0.1:{port}/ui/live/cam.jpg"
            while not done.is_set():
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        answer.read()
                    fetched += 1
                except OSError:
                    done.wait(0.05)  # before the first frame: 404

        with EdgeApp(config) as app:
            while app.stats().frames < 30:  # model loaded, frames flowing: start measuring
                time.sleep(0.01)
            threads = [threading.Thread(target=view) for _ in range(viewers)]
            for t in threads:
                t.start()
            cpu0, f0, t0 = os.times(), app.stats().frames, time.perf_counter()
            while app.stats().frames - f0 < frames and not app.wait(0.05):
                pass
            cpu1, f1, t1 = os.times(), app.stats().frames, time.perf_counter()
            done.set()
            for t in threads:
                t.join()
        n = f1 - f0
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        return {
            "viewers": viewers,
            "frames": n,
            "fps": round(n / (t1 - t0), 1),
            "cpu_s": round(cpu, 2),
            "cpu_ms_per_frame": round(cpu / n * 1000, 2),
            "jpegs_fetched": fetched,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--viewers", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.clip, args.frames, args.child)))
        return 0
    if not args.clip.exists():
        print(f"clip not found: {args.clip}", file=sys.stderr)
        return 2
    rows = []
    for viewers in (0, args.viewers):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(viewers),
                "--clip",
                str(args.clip),
                "--frames",
                str(args.frames),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'viewers':>7} {'frames':>6} {'fps':>7} {'cpu s':>7} {'cpu ms/frame':>12} {'jpegs':>6}")
    for r in rows:
        print(
            f"{r['viewers']:>7} {r['frames']:>6} {r['fps']:>7} {r['cpu_s']:>7} "
            f"{r['cpu_ms_per_frame']:>12} {r['jpegs_fetched']:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
