"""P2 and P3 of this checkout and of a baseline checkout, interleaved in one run, as ratios.

    python bench/baseline.py --baseline DIR [--rounds 3] [--p3-rounds 1] [--only p2|p3]
        [--model FILE] [--clip FILE] [--threads 2] [--p3-trial-s 15] [--p3-start 16] [--json]

Timing on a shared machine drifts by more than the differences worth measuring, so each
round runs ``bench/vision.py --only p2`` (and ``--only p3``) of both checkouts back to back,
each in its own process, in the order A B, then B A in the next round (drift cancels), and
the table reports the medians of the rounds and their ratio (this / baseline). ``DIR`` is
another checkout of the repository, e.g. the commit before a change, exported with
``git archive <commit> | tar -x -C DIR``; it runs with this interpreter and its own code.

* P2: CPU seconds per minute of video, always-detect and motion-gated (``p2_cpu_fraction``
  is gated / always), and the number of start/end events, on the clip replayed through the
  per-object person rule and a presence rule.
* P3: real-time 10 fps streams sustained with at most 1 % of frames dropped, gated and
  ungated (the search of ``bench/vision.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RW = REPO.parent / "shared" / "realworld"
P2_KEYS = ("cpu_s_per_min_always", "cpu_s_per_min_gated", "p2_cpu_fraction", "events_always")
P3_KEYS = ("p3_streams_gated", "p3_streams_ungated")


def _child(root: Path, figure: str, args: argparse.Namespace) -> dict[str, Any]:
    """One ``--only figure`` run of ``root``'s bench/vision.py; its JSON result."""
    cmd = [
        sys.executable,
        str(root / "bench" / "vision.py"),
        "--only",
        figure,
        "--json",
        "--clip",
        str(args.clip),
        "--model",
        str(args.model),
        "--threads",
        str(args.threads),
    ]
    if figure == "p3":
        cmd += ["--p3-trial-s", str(args.p3_trial_s), "--p3-start", str(args.p3_start)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{figure} of {root} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _rounds(figure: str, rounds: int, args: argparse.Namespace) -> dict[str, list[Any]]:
    runs: dict[str, list[Any]] = {"this": [], "baseline": []}
    roots = [("this", REPO), ("baseline", args.baseline)]
    for r in range(rounds):
        for name, root in roots if r % 2 == 0 else roots[::-1]:
            runs[name].append(_child(root, figure, args))
    return runs


def _summary(runs: dict[str, list[Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        this = statistics.median(float(r[key]) for r in runs["this"])
        base = statistics.median(float(r[key]) for r in runs["baseline"])
        out[key] = {
            "this": round(this, 3),
            "baseline": round(base, 3),
            "ratio": round(this / base, 3) if base else None,
            "rounds": [[r[key] for r in runs["this"]], [r[key] for r in runs["baseline"]]],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    clip = RW / "videos" / "one-by-one-person-detection.mp4"
    parser.add_argument("--clip", type=Path, default=clip)
    parser.add_argument(
        "--model", type=Path, default=RW / "models" / "ssd_mobilenet_v1_coco_quant.tflite"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="P2 rounds (each: both checkouts)")
    parser.add_argument("--p3-rounds", type=int, default=1, help="P3 rounds")
    parser.add_argument("--p3-trial-s", type=float, default=15.0)
    parser.add_argument("--p3-start", type=int, default=16)
    parser.add_argument("--only", choices=["p2", "p3"], action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.baseline / "bench" / "vision.py").is_file():
        print(f"{args.baseline} is not a checkout of this repository", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"model": args.model.name, "clip": args.clip.name}
    if args.only is None or "p2" in args.only:
        result |= _summary(_rounds("p2", args.rounds, args), P2_KEYS)
    if args.only is None or "p3" in args.only:
        result |= _summary(_rounds("p3", args.p3_rounds, args), P3_KEYS)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['clip']}, {result['model']}, {args.threads} threads; medians of rounds")
    print(f"| {'figure':<24} | {'this':>9} | {'baseline':>9} | {'this / baseline':>15} |")
    print(f"|{'-' * 26}|{'-' * 11}|{'-' * 11}|{'-' * 17}|")
    for key in P2_KEYS + P3_KEYS:
        if key in result:
            row = result[key]
            print(f"| {key:<24} | {row['this']:>9} | {row['baseline']:>9} | {row['ratio']:>15} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
