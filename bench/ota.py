"""Over-the-air model updates on a running daemon: switch time, frames lost, rollback time,
download throughput with and without the bandwidth cap.

    python bench/ota.py [--rounds 3] [--cap 2000000] [--json]

One ``EdgeApp`` runs the default model (SSD MobileNet v2) on one camera replaying the
generated scene (realtime, 2x speed, looping); a real HTTP file server (``simulator.files``)
serves a copy of the same model. Per round, the updater is offered that copy under a new
version (download, register, test-load, a test run on 6 recent frames next to the running
model, switch, a 10-frame health watch) and then a copy whose detector starts failing at
invoke once switched (the watch rolls it back). Reported, medians over the rounds:

* ``switch`` - from the switch decision to the new runtime swapped in (under the cameras'
  detector lock, at a frame boundary; the download, test-load and test run excluded);
* ``rollback`` - the same for the switch back to the previous detector (kept open);
* frames lost - frames read but neither processed nor skipped on purpose, over the whole run
  (goal 0); frames the failing model itself failed on are counted apart;
* download throughput of the 6 MB file over loopback, uncapped and under ``--cap`` bytes/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge_app.app import EdgeApp  # noqa: E402
from edge_app.config import AppConfig, DetectorConfig, parse_config  # noqa: E402
from edge_app.domain import Detections  # noqa: E402
from edge_app.models import Catalog, load_manifest, pull, sha256_file  # noqa: E402
from edge_app.models.download import DownloadStats, TokenBucket, download  # noqa: E402
from edge_app.models.offer import ModelOffer, UpdateState  # noqa: E402
from edge_app.updates import ModelUpdater  # noqa: E402
from edge_app.vision.detector import Detector, open_detector  # noqa: E402
from simulator.files import FileServer  # noqa: E402


class _FailsWhenLive:
    """A real detector that passes its test run, then fails at every invoke."""

    def __init__(self, inner: Detector, ok: int) -> None:
        self._inner, self._ok, self._calls = inner, ok, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def preparer(self) -> None:
        return None

    def detect(self, image: Any) -> Detections:
        self._calls += 1
        if self._calls > self._ok:
            raise RuntimeError("invoke failed (bench)")
        return self._inner.detect(image)


def _config(tmp: Path, clip: Path, cache: Path, base: str) -> AppConfig:
    return parse_config(
        {
            "device": {"thing_name": "bench-ota", "data_dir": str(tmp / "data")},
            "cameras": [
                {
                    "name": "yard",
                    "source": {
                        "type": "file",
                        "path": str(clip),
                        "realtime": True,
                        "speed": 2.0,
                        "loop": True,
                    },
                }
            ],
            "detector": {"model": "ssd_mobilenet_v2_coco", "model_dir": str(cache)},
            "uplink": {"enabled": False},
            "health": {"enabled": False},
            "model_updates": {
                "allowed_urls": [base],
                "sample_every_s": 0.2,
                "test_frames": 6,
                "watch_frames": 10,
            },
            "log_level": "error",
        }
    )


def _wait(predicate: Any, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit("bench: timed out waiting for the camera")
        time.sleep(0.01)


def run(rounds: int, cap: int) -> dict[str, Any]:
    from simulator.scene import generate_scene

    catalog = load_manifest()
    with tempfile.TemporaryDirectory(prefix="bench-ota-") as name:
        tmp = Path(name)
        cache = tmp / "models"
        cache.mkdir()
        model = pull(catalog.default_spec(), cache, timeout=120.0)
        clip = tmp / "scene.mp4"
        generate_scene(clip, tmp / "scene.json", seconds=10.0, seed=0)
        www = tmp / "www"
        www.mkdir()
        shutil.copyfile(model, www / "m.tflite")
        sha, size = sha256_file(www / "m.tflite"), (www / "m.tflite").stat().st_size
        switch, rollback, download_s = [], [], []
        with FileServer(www) as server:
            config = _config(tmp, clip, cache, server.base)
            with EdgeApp(config) as app:
                _wait(lambda: app.camera_stats()["yard"].processed >= 20)
                shipped = app.model_updates

                def failing(c: DetectorConfig, cat: Catalog | None) -> Detector:
                    return _FailsWhenLive(open_detector(c, cat), ok=6)

                breaks = ModelUpdater(config, replace(shipped.parts, open_model=failing))
                for i in range(rounds):
                    offer = ModelOffer(
                        url=server.url("m.tflite"),
                        sha256=sha,
                        size=size,
                        name="bench",
                        version=f"{i}",
                    )
                    good = shipped.update(offer, origin="bench")
                    assert good.state is UpdateState.SWITCHED, good.reason
                    switch.append(good.figures["switch_s"])
                    download_s.append(good.figures["download_s"])
                    bad = breaks.update(
                        offer.model_copy(update={"version": f"{i}-bad"}), origin="bench"
                    )
                    assert bad.state is UpdateState.ROLLED_BACK, bad.reason
                    rollback.append(bad.figures["rollback_s"])
                app.request_stop()
                app.wait(30)
                stats = app.camera_stats()["yard"]
            uncapped = _throughput(server, sha, size, tmp / "dl1", None)
            capped = _throughput(server, sha, size, tmp / "dl2", cap)
    lost = stats.lost
    return {
        "rounds": rounds,
        "switch_ms": 1000 * statistics.median(switch),
        "switch_ms_max": 1000 * max(switch),
        "rollback_ms": 1000 * statistics.median(rollback),
        "rollback_ms_max": 1000 * max(rollback),
        "frames": stats.frames,
        "frames_lost": lost - stats.detect_errors,
        "failed_by_bad_model": stats.detect_errors,
        "offer_download_s": statistics.median(download_s),
        "download_mb_s": uncapped,
        "capped_mb_s": capped,
        "cap_mb_s": cap / 1e6,
        "model_bytes": size,
    }


def _throughput(server: FileServer, sha: str, size: int, into: Path, cap: int | None) -> float:
    started = time.perf_counter()
    download(
        server.url("m.tflite"),
        sha256=sha,
        size=size,
        folder=into,
        allowed=lambda url: url.startswith(server.base),
        max_bytes=1 << 30,
        bucket=TokenBucket(cap) if cap else None,
        stats=DownloadStats(),
    )
    return size / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cap", type=int, default=2_000_000, help="bandwidth cap, bytes/s")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.rounds, args.cap)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"command: python bench/ota.py --rounds {args.rounds} --cap {args.cap}")
    print(
        f"machine: {platform.machine()}, {platform.system()}, "
        f"{__import__('os').cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d}"
    )
    print("| figure | value | goal |\n|---|---|---|")
    r = result
    print(
        f"| switch (download excluded), median / max of {r['rounds']} | "
        f"{r['switch_ms']:.1f} / {r['switch_ms_max']:.1f} ms | |"
    )
    print(
        f"| rollback after a failed watch, median / max | "
        f"{r['rollback_ms']:.1f} / {r['rollback_ms_max']:.1f} ms | |"
    )
    print(
        f"| frames lost over {r['frames']} frames and {2 * r['rounds']} switches | "
        f"{r['frames_lost']} | 0 |"
    )
    print(
        f"| frames the failing model failed on (then rolled back) | {r['failed_by_bad_model']} | |"
    )
    print(
        f"| download {r['model_bytes'] / 1e6:.1f} MB, loopback, uncapped | "
        f"{r['download_mb_s']:.0f} MB/s | |"
    )
    print(f"| download capped at {r['cap_mb_s']:.1f} MB/s | {r['capped_mb_s']:.2f} MB/s | <= cap |")


if __name__ == "__main__":
    main()
