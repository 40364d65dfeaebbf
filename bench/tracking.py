"""Event precision and recall of per-object rules, this checkout against a baseline, one table.

    python bench/tracking.py [--baseline DIR] [--models v2,v1] [--threshold 0.5] [--json]

Material, detected once per model by this checkout (the detector is not what is compared):

* ``visits``: 4 generated scenes (``simulator.scene``, seeds 1-4, 10 s): people, a motorcycle
  and a cat, one at a time, exact truth;
* ``crossing`` and ``occlusion``: 4 seeds each of ``simulator.encounters`` (two people passing,
  one walking behind a pillar), exact truth;
* ``real``: one-by-one-person-detection.mp4 (../shared/realworld), six visits; each visit's
  window runs from midway after the previous visit's occupied frames (MANIFEST) to midway
  before the next one's.

Each checkout replays the detections through its own ``RuleEngine`` (with the frames) with
per-object rules like the issue's (min_score 0.5, min_frames 2, end_after_s 3), one per label.
A start is a true positive when it pairs one-to-one with a visit of its label whose frames
(window, for the real clip) hold it; precision = paired starts / starts, recall = paired
visits / visits. ``DIR`` is another checkout (``git archive <commit> | tar -x -C DIR``); its
replay runs in a child process with its own code. The last row is the rule engines' time
per processed frame (all clips; it includes the pixels the tracker looks at for lost tracks).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RW = REPO.parent / "shared" / "realworld"
REAL = RW / "videos" / "one-by-one-person-detection.mp4"
REAL_VISITS = ((100,), (300, 400), (600,), (800,), (1000, 1100), (1300,))
SEEDS = (1, 2, 3, 4)
LABELS = ("person", "motorcycle", "cat")

Visit = tuple[str, int, int]  # label, first frame, frame after the last


def _material(workdir: Path) -> list[dict[str, Any]]:
    """The clips and their visits: [{kind, seed, clip, fps, visits}]."""
    from simulator.encounters import generate_encounter
    from simulator.scene import generate_scene

    items: list[dict[str, Any]] = []
    for seed in SEEDS:
        clip = workdir / f"visits{seed}.mp4"
        truth = generate_scene(clip, workdir / f"visits{seed}.json", seconds=10.0, seed=seed)
        items.append({"kind": "visits", "seed": seed, "clip": clip, "truth": truth})
        for kind in ("crossing", "occlusion"):
            clip = workdir / f"{kind}{seed}.mp4"
            truth = generate_encounter(clip, workdir / f"{kind}{seed}.json", kind=kind, seed=seed)
            items.append({"kind": kind, "seed": seed, "clip": clip, "truth": truth})
    for item in items:
        truth = item.pop("truth")
        item["fps"] = truth.fps
        item["visits"] = [(o.label, o.enter_frame, o.leave_frame) for o in truth.objects]
    if REAL.is_file():
        edges = [0, *((a[-1] + b[0]) // 2 for a, b in itertools.pairwise(REAL_VISITS))]
        ends = [*edges[1:], 10**9]
        visits = [("person", a, b) for a, b in zip(edges, ends, strict=True)]
        items.append({"kind": "real", "seed": 0, "clip": REAL, "fps": 10.0, "visits": visits})
    return items


def _detect(items: list[dict[str, Any]], model: str, workdir: Path) -> Path:
    """Detections (threshold 0.1) of every frame of every clip, pickled; returns the file."""
    import cv2
    import numpy as np

    from edge_app.config import DetectorConfig
    from edge_app.vision import TFLiteDetector, open_detector

    if model == "v1":
        labels = REPO / "models" / "labels" / "coco_labels_v1.txt"
        path = RW / "models" / "ssd_mobilenet_v1_coco_quant.tflite"
        detector = TFLiteDetector(path, labels, threads=2, score_threshold=0.1)
    else:
        detector = open_detector(DetectorConfig(score_threshold=0.1))
    found: dict[str, list[Any]] = {}
    with detector:
        for item in items:
            capture = cv2.VideoCapture(str(item["clip"]))
            rows = []
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                d = detector.detect(np.asarray(image, np.uint8))
                rows.append((d.xyxy, d.scores, d.class_ids, d.labels))
            capture.release()
            found[str(item["clip"])] = rows
    out = workdir / f"detections-{model}.pickle"
    out.write_bytes(pickle.dumps(found))
    return out


def _replay(items: list[dict[str, Any]], detections: Path, threshold: float) -> dict[str, Any]:
    """(paired starts, starts, paired visits, visits) per kind, with this process's code, and
    ``"rules_ms"``: the rule engines' time per processed frame (ms, all clips)."""
    import time

    import cv2
    import numpy as np

    from edge_app.config import CameraConfig, RuleConfig
    from edge_app.domain import Detections, Frame, ModelRef, Phase
    from edge_app.vision.rules import EventContext, RuleEngine

    found = pickle.loads(detections.read_bytes())  # written by the parent
    rules = [
        RuleConfig(
            name=label,
            labels=[label],
            min_score=0.5,
            min_frames=2,
            end_after_s=3.0,
            per_object=True,
        )
        for label in LABELS
    ]
    cam = CameraConfig.model_validate({"name": "b", "source": {"type": "file", "path": "x"}})
    totals: dict[str, Any] = {}
    spent, processed = 0.0, 0
    for item in items:
        engine = RuleEngine(cam, rules, EventContext("b", ModelRef("m", "x"), 1))
        capture = cv2.VideoCapture(str(item["clip"]))
        starts: list[tuple[str, int]] = []
        for index, (xyxy, scores, ids, labels) in enumerate(found[str(item["clip"])]):
            ok, image = capture.read()
            assert ok
            keep = np.flatnonzero(scores >= threshold)
            dets = Detections(xyxy[keep], scores[keep], ids[keep], tuple(labels[i] for i in keep))
            t = index / item["fps"]
            frame = Frame("b", index, t, 1.79e9 + t, np.asarray(image, np.uint8))
            started = time.perf_counter()
            events = engine.update(frame, dets)
            spent += time.perf_counter() - started
            processed += 1
            starts += [(e.label, index) for e in events if e.phase is Phase.START]
        capture.release()
        free = list(item["visits"])
        paired = 0
        for label, index in starts:
            visit = next((v for v in free if v[0] == label and v[1] <= index < v[2] + 10), None)
            if visit is not None:
                paired += 1
                free.remove(visit)
        row = totals.setdefault(item["kind"], [0, 0, 0, 0])
        counts = (paired, len(starts), len(item["visits"]) - len(free), len(item["visits"]))
        for i, count in enumerate(counts):
            row[i] += count
    totals["rules_ms"] = round(spent / max(processed, 1) * 1000, 4)
    return totals


def _child(root: Path, items_file: Path, detections: Path, threshold: float) -> dict[str, Any]:
    # This file's _replay, run with ``root``'s edge_app (first on the path).
    code = (
        "import sys, json, pickle, runpy; from pathlib import Path; "
        f"sys.path.insert(0, {str(root)!r}); "
        f"replay = runpy.run_path({str(Path(__file__).resolve())!r})['_replay']; "
        f"items = pickle.loads(Path({str(items_file)!r}).read_bytes()); "
        f"print(json.dumps(replay(items, Path({str(detections)!r}), {threshold})))"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    )
    if out.returncode != 0:
        raise SystemExit(f"replay with {root} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--models", default="v2,v1", help="v2 (the default model), v1 (SSD v1)")
    parser.add_argument("--threshold", type=float, default=0.5, help="detector score_threshold")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    roots = [("this", REPO)] + ([("baseline", args.baseline)] if args.baseline else [])
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        items = _material(workdir)
        items_file = workdir / "items.pickle"
        items_file.write_bytes(pickle.dumps(items))
        for model in args.models.split(","):
            detections = _detect(items, model, workdir)
            for name, root in roots:
                result[f"{model}/{name}"] = _child(root, items_file, detections, args.threshold)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"per-object events, detector threshold {args.threshold}: precision / recall")
    header = " | ".join(f"{k:<22}" for k in result)
    print(f"| {'material':<10} | {header} |")
    print(f"|{'-' * 12}|" + "|".join("-" * 24 for _ in result) + "|")
    kinds = sorted({kind for totals in result.values() for kind in totals} - {"rules_ms"})
    for kind in [*kinds, "all"]:
        cells = []
        for totals in result.values():
            rows = [totals[k] for k in (kinds if kind == "all" else [kind]) if k in totals]
            ps, s, pv, v = (sum(r[i] for r in rows) for i in range(4))
            cells.append(f"{ps / max(s, 1):.3f} ({ps}/{s}) / {pv / max(v, 1):.3f}")
        print(f"| {kind:<10} | " + " | ".join(f"{c:<22}" for c in cells) + " |")
    cells = [f"{totals['rules_ms']:.3f} ms" for totals in result.values()]
    print(f"| {'rules/frame':<10} | " + " | ".join(f"{c:<22}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
