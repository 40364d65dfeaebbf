"""A model rollout to N replay devices: time to all SUCCEEDED, frames lost, bad canary canceled.

    python bench/rollout.py [--devices 1,2,4,8] [--clip CLIP] [--model FILE]
                            [--new-model FILE --new-labels FILE] [--bad-model FILE]
                            [--dir DIR] [--json]

Each cell is one ``python -m simulator fleet --replay CLIP --rollout`` run
(``simulator.fleetsim.Fleet`` with ``simulator.fleetrollout.Rollout``): N devices each running
the real daemon (``EdgeApp``, one inference thread) on the clip looping, over mutual TLS to one
Mosquitto with the device policy's ACLs, the IoT Jobs emulator on the broker and the models on
a real HTTP file server. Per cell: the bad model job (canary 1, abort at 50 % FAILED) from
creation to CANCELED; the good model job from creation to every device SUCCEEDED (download,
register, test-run on recent frames, switch at a frame boundary, a 10-frame health watch),
with the fastest and slowest device and the slowest device's download, test run and health
watch (the updater's own timings); frames lost over the whole run (read by the camera loop
but neither processed nor skipped on purpose; goal 0); whether every expectation held.

The baseline, measured in the same run, is the 1-device cell: one device's update alone. The
devices, the broker and the services share this machine's cores, so a bigger fleet also means
slower inference on every device (its test run and watch take longer): the ratio to the
baseline is the machine's contention, not the Jobs service's.

Default clip: the generated 10 s scene (``simulator.scene``, made once in the work directory).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run_cell(
    devices: int,
    clip: Path,
    model: Path,
    workdir: Path,
    pki_dir: Path,
    rollout: Any,
) -> dict[str, Any]:
    from simulator.fleetplan import FleetPlan
    from simulator.fleetrollout import Rollout
    from simulator.fleetsim import Fleet

    plan = FleetPlan(devices, 1.0, 1, replay=clip, drain_timeout_s=60.0)
    wall0 = time.monotonic()
    with Rollout(rollout, workdir, model) as scenario:
        report = Fleet(
            plan,
            workdir,
            model=model,
            pki_dir=pki_dir,
            on_phase=[scenario.on_phase],
            replay_loop=True,
            model_updates=scenario.model_updates,
        ).run()
    outcome = scenario.report
    times = [d.succeeded_s for d in outcome.devices if d.succeeded_s is not None]
    return {
        "devices": devices,
        "canceled_s": outcome.bad_job.get("canceled_s"),
        "bad_job": outcome.bad_job.get("status"),
        "all_succeeded_s": outcome.good_job.get("all_succeeded_s"),
        "first_s": min(times, default=None),
        "last_s": max(times, default=None),
        "succeeded": len(times),
        "watch_s_max": max((d.stages_s.get("watch_s", 0.0) for d in outcome.devices), default=0.0),
        "test_run_s_max": max(
            (d.stages_s.get("test_run_s", 0.0) for d in outcome.devices), default=0.0
        ),
        "download_s_max": max(
            (d.stages_s.get("download_s", 0.0) for d in outcome.devices), default=0.0
        ),
        "lost_frames": sum(max(0, d.lost_frames) for d in outcome.devices),
        "events_on_new": sum(d.events_on_new for d in outcome.devices),
        "delivered_complete": report.complete,
        "ok": outcome.ok and report.complete,
        "problems": outcome.problems,
        "wall_s": round(time.monotonic() - wall0, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=_ints, default=[1, 2, 4, 8])
    parser.add_argument("--clip", type=Path, help="replay clip (default: the generated scene)")
    parser.add_argument("--model", type=Path, help="running model (default: the default model)")
    parser.add_argument("--new-model", type=Path)
    parser.add_argument("--new-labels", type=Path)
    parser.add_argument("--bad-model", type=Path)
    parser.add_argument("--timeout", type=float, default=180.0, help="each rollout step, s")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from edge_app.logs import configure_logging
    from edge_app.models import default_model_dir, load_manifest, pull
    from simulator.certs import make_pki
    from simulator.fleetplan import thing_names
    from simulator.fleetrollout import RolloutPlan
    from simulator.scene import generate_scene

    configure_logging("error")
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    if args.dir is None:
        atexit.register(shutil.rmtree, root, True)
    root.mkdir(parents=True, exist_ok=True)
    clip = args.clip
    if clip is None:
        clip = root / "scene.mp4"
        if not clip.exists():
            generate_scene(clip, root / "scene.json", seconds=10.0, seed=0)
    model = args.model or pull(load_manifest().default_spec(), default_model_dir(), progress=None)
    rollout = RolloutPlan(args.new_model, args.new_labels, args.bad_model, args.timeout)
    pki_dir = root / "pki"
    for thing in thing_names(max(args.devices)):
        make_pki(pki_dir, thing)
    cells = []
    for devices in sorted(set(args.devices) | {1}):  # 1 device: the baseline
        cell = run_cell(devices, clip, model, root / f"d{devices}", pki_dir, rollout)
        cells.append(cell)
        if not args.json:
            print(
                f"  {devices} devices: all SUCCEEDED in {cell['all_succeeded_s']} s, canceled "
                f"in {cell['canceled_s']} s, lost {cell['lost_frames']}, ok {cell['ok']}",
                flush=True,
            )
    base = cells[0]["all_succeeded_s"]
    for cell in cells:
        t = cell["all_succeeded_s"]
        cell["x_baseline"] = round(t / base, 2) if t and base else None
    result = {
        "command": "python bench/rollout.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores {platform.machine()}, load {os.getloadavg()[0]:.1f}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "clip": str(clip),
        "new_model": str(args.new_model or "the running model as version 2"),
        "cells": cells,
    }
    if args.json:
        print(json.dumps(result))
        return 0 if all(c["ok"] for c in cells) else 1
    print(f"\n{result['command']}  ({result['machine']}, {result['date']})\n")
    head = (
        "| devices | bad job | canary to CANCELED s | all SUCCEEDED s | x baseline | first s "
        "| last s | download s | test run s | watch s | frames lost | events on new model "
        "| delivery complete | as expected |"
    )
    print(head)
    print("|" + "---|" * head.count(" |"))
    for c in cells:
        print(
            f"| {c['devices']} | {c['bad_job']} | {c['canceled_s']} | {c['all_succeeded_s']} "
            f"| {c['x_baseline']} | {c['first_s']} | {c['last_s']} | {c['download_s_max']} "
            f"| {c['test_run_s_max']} | {c['watch_s_max']} | {c['lost_frames']} "
            f"| {c['events_on_new']}/{c['devices']} | {'yes' if c['delivered_complete'] else 'NO'} "
            f"| {'yes' if c['ok'] else 'NO: ' + '; '.join(c['problems'])} |"
        )
    print("\nbaseline: the 1-device cell (one device's update alone), same run")
    return 0 if all(c["ok"] for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
