"""``python -m simulator replay VIDEO... --config FILE``: the full appliance on video files.

Each file becomes a camera (named after the file), paced like a camera would deliver frames
(``--realtime`` or ``--speed X``) or as fast as possible; the rest of the config (model, rules,
uplink) is used as it is. A progress bar per file on stderr, a summary at the end.
"""

from __future__ import annotations

__all__ = ["main", "register", "replay_config"]

import argparse
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2

from edge_app.app import EdgeApp
from edge_app.config import AppConfig, load_config, parse_config
from edge_app.errors import EdgeAppError
from edge_app.logs import configure_logging
from edge_app.sources import open_video


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("replay", help="run the appliance with video files as cameras")
    parser.add_argument(
        "videos", nargs="+", type=Path, metavar="VIDEO", help="video files, one camera each"
    )
    parser.add_argument("--config", "-c", type=Path, required=True, help="appliance config (YAML)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="deliver frames at the file's fps")
    pace.add_argument("--speed", type=float, help="deliver frames at X times the file's fps")
    parser.add_argument("--loop", action="store_true", help="start each file over at its end")
    parser.set_defaults(func=main)


def replay_config(
    base: AppConfig, videos: list[Path], *, speed: float | None, loop: bool
) -> AppConfig:
    """``base`` with its cameras replaced by one file camera per video."""
    doc: dict[str, Any] = base.model_dump(mode="json")
    cameras = []
    taken: set[str] = set()
    for video in videos:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", video.stem)[:60] or "video"
        name, n = stem, 1
        while name in taken:  # the same file twice is two cameras
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        source = {"type": "file", "path": str(video.resolve()), "loop": loop}
        if speed is not None:
            source |= {"realtime": True, "speed": speed}
        cameras.append({"name": name, "source": source, "zones": []})
    doc["cameras"] = cameras
    # rules naming cameras or zones of the original config cannot apply to the files
    doc["rules"] = [r | {"camera": None, "zone": None} for r in doc["rules"]]
    return parse_config(doc, "replay")


def _progress(app: EdgeApp, totals: dict[str, int], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        stats = app.stats()
        lines = []
        for name, cam in stats.cameras.items():
            total = totals.get(name) or 1
            done = min(cam.frames, total)
            bar = "#" * int(30 * done / total)
            lines.append(f"{name[:24]:<24} [{bar:<30}] {cam.frames}/{totals.get(name, '?')}")
        sys.stderr.write("\r" + " | ".join(lines)[:200])
        sys.stderr.flush()
    sys.stderr.write("\n")


def main(args: argparse.Namespace) -> int:
    try:
        base = load_config(args.config)
        speed = 1.0 if args.realtime else args.speed
        config = replay_config(base, list(args.videos), speed=speed, loop=args.loop)
        totals = {}
        for camera, video in zip(config.cameras, args.videos, strict=True):
            cap = open_video(video)
            totals[camera.name] = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
    except EdgeAppError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    app = EdgeApp(config)
    t0 = time.monotonic()
    try:
        app.start()
    except EdgeAppError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    progress = threading.Thread(target=_progress, args=(app, totals, done), daemon=True)
    progress.start()
    try:
        while not app.wait(timeout=0.2):
            pass
    except KeyboardInterrupt:
        pass  # stop() below ends capture, closes episodes and flushes
    finally:
        done.set()
        progress.join()
        stats = app.stats()
        app.stop()
    print(f"replayed {len(args.videos)} file(s) in {time.monotonic() - t0:.1f} s")
    for name, cam in stats.cameras.items():
        print(
            f"  {name}: {cam.frames} frames, {cam.processed} processed, "
            f"{cam.detections} detections, {cam.events} events"
        )
    print(f"  outbox: {stats.outbox_depth} undelivered, last seq {stats.last_seq}")
    return 0
