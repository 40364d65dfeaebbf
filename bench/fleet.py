"""Devices x events/s one Mosquitto sustains on this machine with delivery complete: the knee.

    python bench/fleet.py [--devices 1,5,10,20,50] [--rates 1,5,20] [--seconds 8]
                          [--max-p99 5] [--dir DIR] [--json]

Each cell is one ``simulator.fleetsim.Fleet`` run, the same as ``python -m simulator fleet``:
N devices, each with its own certificate, client id, SQLite outbox (synchronous=FULL), real
``DrainLoop`` and ``MqttTransport`` over mutual TLS to one Mosquitto with per-device ACLs,
raising ``rate`` events/s for ``--seconds`` seconds; the cloud side counts every event by id.
A cell *holds* when every event arrived (0 missing) within ``--drain-timeout`` seconds, the
p99 raise -> delivered lag is at most ``--max-p99`` seconds, and no device's producer fell more
than ``--max-behind`` seconds behind its schedule (past that the load was not offered: the
machine ran out of CPU or fsyncs before the broker gave way). The knee is the highest fleet
load (devices x rate, events/s) that holds, with the lowest that does not above it.

The whole fleet, its cloud consumer and the broker share this machine's cores: what is measured
is one process simulating N devices *and* the broker, not the broker alone. Per cell the CPU
seconds of this process (devices, consumer) and of Mosquitto (a child, counted once it exits)
are shown against the wall time. Certificates are made once for the largest fleet first, so no
cell pays for openssl. Cells run in order; a cell is not skipped after a failure.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
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


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cell(
    devices: int, rate: float, seconds: float, workdir: Path, pki_dir: Path, drain_timeout: float
) -> dict[str, Any]:
    from simulator.fleetplan import FleetPlan
    from simulator.fleetsim import Fleet

    events = max(1, round(rate * seconds))
    plan = FleetPlan(devices, rate, events, drain_timeout_s=drain_timeout)
    cpu0, child0, wall0 = time.process_time(), _children_cpu(), time.monotonic()
    report = Fleet(plan, workdir, pki_dir=pki_dir).run()
    wall = time.monotonic() - wall0
    tot = report.totals
    return {
        "devices": devices,
        "rate": rate,
        "load": round(devices * rate, 1),
        "events": int(tot["raised"]),
        "missing": int(tot["missing"]),
        "duplicates": int(tot["duplicates"]),
        "complete": report.complete,
        "lag_p50_s": tot["lag_p50_s"],
        "lag_p99_s": tot["lag_p99_s"],
        "lag_max_s": tot["lag_max_s"],
        "behind_s": tot["behind_s"],
        "raised_per_s": round(tot["raised"] / max(report.phases_s.get("run", 0.0), 1e-9), 1),
        "batches": int(tot["batches"]),
        "publishes_per_s": report.broker.publishes_received_per_s,
        "drain_s": report.phases_s.get("drain", 0.0),
        "wall_s": round(wall, 1),
        "cpu_sim_s": round(time.process_time() - cpu0, 1),
        "cpu_broker_s": round(_children_cpu() - child0, 1),
    }


def knee(cells: list[dict[str, Any]], max_p99: float, max_behind: float) -> dict[str, Any]:
    """The highest load that held and the lowest that failed above it (None if none)."""
    for cell in cells:
        cell["holds"] = bool(
            cell["complete"] and cell["lag_p99_s"] <= max_p99 and cell["behind_s"] <= max_behind
        )
    held = [c for c in cells if c["holds"]]
    best = max(held, key=lambda c: c["load"], default=None)
    floor = best["load"] if best else 0.0
    above = [c for c in cells if not c["holds"] and c["load"] > floor]
    broke = min(above, key=lambda c: c["load"], default=None)
    return {"held": best, "failed_above": broke}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=_ints, default=[1, 5, 10, 20, 50])
    parser.add_argument("--rates", type=_floats, default=[1.0, 5.0, 20.0])
    parser.add_argument("--seconds", type=float, default=8.0, help="generation time per cell")
    parser.add_argument("--max-p99", type=float, default=5.0, help="lag bound, seconds")
    parser.add_argument(
        "--max-behind",
        type=float,
        default=1.0,
        help="most seconds a producer may fall behind its schedule (else the load was not "
        "offered: the machine, not the broker, is the limit)",
    )
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from edge_app.logs import configure_logging
    from simulator.certs import make_pki
    from simulator.fleetplan import thing_names

    configure_logging("error")
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    if args.dir is None:
        atexit.register(shutil.rmtree, root, True)
    pki_dir = root / "pki"
    for thing in thing_names(max(args.devices)):
        make_pki(pki_dir, thing)
    cells = []
    for devices in args.devices:
        for rate in args.rates:
            work = root / f"d{devices}-r{rate:g}"
            cell = run_cell(devices, rate, args.seconds, work, pki_dir, args.drain_timeout)
            cells.append(cell)
            if not args.json:
                print(
                    f"  {devices:>3} devices x {rate:g} ev/s: p99 {cell['lag_p99_s']} s, "
                    f"missing {cell['missing']}, {cell['wall_s']} s",
                    flush=True,
                )
    found = knee(cells, args.max_p99, args.max_behind)
    result = {
        "command": "python bench/fleet.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores {platform.machine()}, load {os.getloadavg()[0]:.1f}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "seconds": args.seconds,
        "max_p99_s": args.max_p99,
        "max_behind_s": args.max_behind,
        "cells": cells,
        "knee": found,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"\n{result['command']}  ({result['machine']}, {result['date']})\n")
    head = "| devices | ev/s each | fleet ev/s | events | missing | dup | p50 s | p99 s | "
    head += "behind s | raised ev/s | broker pub/s | drain s | CPU sim s | CPU broker s | wall s "
    head += "| holds |"
    print(head)
    print("|" + "---|" * head.count(" |"))
    for c in cells:
        print(
            f"| {c['devices']} | {c['rate']:g} | {c['load']:g} | {c['events']} | {c['missing']} "
            f"| {c['duplicates']} | {c['lag_p50_s']} | {c['lag_p99_s']} | {c['behind_s']} "
            f"| {c['raised_per_s']} "
            f"| {c['publishes_per_s']} | {c['drain_s']} | {c['cpu_sim_s']} | {c['cpu_broker_s']} "
            f"| {c['wall_s']} | {'yes' if c['holds'] else 'NO'} |"
        )
    held, broke = found["held"], found["failed_above"]
    print()
    if held is None:
        print("knee: no cell held")
    else:
        print(
            f"knee: {held['load']:g} events/s held ({held['devices']} devices x {held['rate']:g}"
            f" ev/s, p99 {held['lag_p99_s']} s)"
            + (
                f"; {broke['load']:g} ev/s failed ({broke['devices']} x {broke['rate']:g})"
                if broke
                else "; every cell held: the knee is above this grid"
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
