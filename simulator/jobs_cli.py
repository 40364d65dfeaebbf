"""``python -m simulator jobs``: the IoT Jobs service emulator on the command line.

Serves ``JobsService`` on a broker, creates one job (a document file, targets given as things
and/or ``--group NAME=THING,THING``, the rollout, abort and timeout settings of
``edge-app fleet rollout``), applies the rollout once a second, prints each execution's status
change as a JSON line, and exits once the job is COMPLETED or CANCELED (exit 0; 1 if any
execution did not succeed) or after ``--duration`` seconds (exit 3).
"""

from __future__ import annotations

__all__ = ["main", "register"]

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from simulator.jobs import JobsError, JobsService

_EXIT_NOT_ALL_SUCCEEDED = 1
_EXIT_BAD_INPUT = 2
_EXIT_TIMED_OUT = 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "jobs",
        help="run an IoT Jobs service emulator with one job and print its executions",
        description="Serves the AWS IoT Jobs device MQTT API for every thing on the broker, "
        "creates the job and prints every execution status change as a JSON line until the "
        "job ends.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="broker host")
    parser.add_argument("--port", type=int, default=1883, help="broker port (plain listener)")
    parser.add_argument("--job", required=True, help="job id")
    parser.add_argument("--document", type=Path, required=True, help="job document (JSON file)")
    parser.add_argument("--thing", action="append", default=[], help="a target thing")
    parser.add_argument(
        "--group", action="append", default=[], metavar="NAME=THING,...", help="a thing group"
    )
    parser.add_argument("--max-per-minute", type=int, help="rollout pace")
    parser.add_argument("--canary", type=int, help="exponential rollout from N a minute")
    parser.add_argument("--abort-failed-percent", type=float, help="abort threshold, percent")
    parser.add_argument("--abort-min-executed", type=int, default=1, help="abort after K (1)")
    parser.add_argument("--timeout-minutes", type=float, help="IN_PROGRESS longer: TIMED_OUT")
    parser.add_argument("--duration", type=float, default=600.0, help="give up after, s (600)")


def main(args: argparse.Namespace) -> int:
    try:
        document = json.loads(args.document.read_text(encoding="utf-8"))
        groups = dict(_group(g) for g in args.group)
    except (OSError, ValueError) as exc:
        print(f"python -m simulator jobs: {exc}", file=sys.stderr)
        return _EXIT_BAD_INPUT
    rollout: dict[str, Any] = {}
    if args.max_per_minute:
        rollout["maximumPerMinute"] = args.max_per_minute
    if args.canary:
        rollout["exponentialRate"] = {
            "baseRatePerMinute": args.canary,
            "incrementFactor": 2.0,
            "rateIncreaseCriteria": {"numberOfSucceededThings": args.canary},
        }
    abort = []
    if args.abort_failed_percent is not None:
        abort.append(
            {
                "failureType": "ALL",
                "action": "CANCEL",
                "thresholdPercentage": args.abort_failed_percent,
                "minNumberOfExecutedThings": args.abort_min_executed,
            }
        )
    with JobsService(args.host, args.port, client_id=f"jobs-cli-{args.job}"[:64]) as service:
        for name, things in groups.items():
            service.add_group(name, things)
        try:
            service.create_job(
                args.job,
                document,
                things=args.thing,
                groups=list(groups),
                rollout=rollout,
                abort=abort,
                timeout_minutes=args.timeout_minutes,
            )
        except JobsError as exc:
            print(f"python -m simulator jobs: {exc}", file=sys.stderr)
            return _EXIT_BAD_INPUT
        return _watch(service, args.job, args.duration)


def _watch(service: JobsService, job: str, duration: float) -> int:
    seen: dict[str, str] = {}
    end = time.monotonic() + duration
    while True:
        service.tick()
        for thing, state in service.executions(job).items():
            if seen.get(thing) != state["status"]:
                seen[thing] = state["status"]
                print(json.dumps({"thing": thing, **state}), flush=True)
        status = service.job_status(job)
        if status in ("COMPLETED", "CANCELED"):
            print(json.dumps({"job": job, "status": status, **_counts(seen)}), flush=True)
            ok = status == "COMPLETED" and all(s == "SUCCEEDED" for s in seen.values())
            return 0 if ok else _EXIT_NOT_ALL_SUCCEEDED
        if time.monotonic() > end:
            print(json.dumps({"job": job, "status": status, "gave_up": True}), flush=True)
            return _EXIT_TIMED_OUT
        # wake on any change, at least once a second for the rollout's minute windows
        service.wait_until(lambda: _changed(service, job, seen), timeout=1.0)


def _changed(service: JobsService, job: str, seen: dict[str, str]) -> bool:
    now = service.executions(job)
    return any(seen.get(t) != s["status"] for t, s in now.items())


def _counts(seen: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in seen.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def _group(text: str) -> tuple[str, list[str]]:
    name, sep, things = text.partition("=")
    if not sep or not name or not things:
        raise ValueError(f"--group takes NAME=THING,THING..., not {text!r}")
    return name, [t for t in things.split(",") if t]
