"""The command line of ``python -m simulator fleet`` (the run itself: ``simulator.fleetsim``).

Arguments become a ``FleetPlan`` before anything starts, so a bad one is a one-line error and
exit code 2; the broker, certificates or model failing to set up is exit 3; the report is a
table (``print_report``) or, with ``--json``, one object; exit 1 when anything is missing.
``--rollout`` (with ``--replay``) adds the model rollout scenario (``simulator.fleetrollout``):
its outcome is printed after the delivery table (``print_rollout``) or under ``rollout`` in the
JSON, and exit 1 also when one of its expectations failed.
"""

from __future__ import annotations

__all__ = [
    "main",
    "plan_from_args",
    "print_report",
    "print_rollout",
    "register",
    "rollout_from_args",
]

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from edge_app.errors import EdgeAppError, ModelError
from edge_app.models import default_model_dir, load_manifest, pull
from simulator.broker import BrokerError, ensure_mosquitto
from simulator.certs import PkiError
from simulator.fleetplan import FleetPlan, OutageSpec, random_outages
from simulator.fleetrollout import Rollout, RolloutPlan, RolloutReport
from simulator.fleetsim import Fleet, FleetReport


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "fleet",
        help="many simulated devices against one broker: per-device delivery audit",
        description=(
            "N simulated devices (cam-0001..), each with its own certificate, client id and "
            "SQLite outbox running the real delivery stack, against one Mosquitto with mutual "
            "TLS and per-device ACLs (the AWS IoT device policy); scripted outages per device. "
            "Prints per-device raised/delivered/duplicates/missing, raise-to-delivered lag and "
            "the broker's message rate; exits 1 if any event is missing."
        ),
    )
    parser.add_argument("--devices", type=int, default=3, help="number of devices (1-500)")
    parser.add_argument(
        "--rate", type=float, default=5.0, help="events per second each device raises"
    )
    parser.add_argument("--events", type=int, default=50, help="events each device raises")
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="CLIP",
        help="instead of generated events, each device runs the whole daemon (EdgeApp, the "
        "default model, one inference thread) on CLIP at its own fps: much heavier, at most "
        "8 devices; --rate and --events are then unused",
    )
    parser.add_argument(
        "--model", type=Path, help="with --replay: detector model file (default: the pulled "
        "default model)"
    )  # fmt: skip
    parser.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="THING:START:DURATION",
        help="take THING offline START seconds into the run for DURATION seconds (its link "
        "is refused and reset, the others keep theirs), e.g. cam-0003:5:10; repeatable",
    )
    parser.add_argument(
        "--outages",
        choices=["random"],
        help="random: a quarter of the devices (at least one) each offline once, drawn "
        "with --seed (instead of --outage)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of --outages random")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for delivery to complete after the last event is raised",
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=30.0, help="seconds to wait for devices to connect"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep certificates (reused), broker log and outboxes (emptied at the start) "
        "here (default: a temporary directory, removed at the end)",
    )
    rollout = parser.add_argument_group(
        "rollout (with --replay)",
        "--rollout: an IoT Jobs model rollout to every device while they run (a Jobs "
        "emulator on the broker, a file server for the models): a bad model job staged to a "
        "canary must fail there and be CANCELED by its abort rule, then a good model job must "
        "succeed on every device with no frame lost; exits 1 if any of that does not hold",
    )
    rollout.add_argument(
        "--rollout", action="store_true", help="run the rollout scenario (needs --replay)"
    )
    rollout.add_argument(
        "--new-model",
        type=Path,
        metavar="FILE",
        help="the model the good job rolls out (default: the running model as version 2)",
    )
    rollout.add_argument(
        "--new-labels", type=Path, metavar="FILE", help="label file of --new-model"
    )
    rollout.add_argument(
        "--bad-model",
        type=Path,
        metavar="FILE",
        help="the canary's bad model (default: a corrupt copy of the running model)",
    )
    rollout.add_argument(
        "--rollout-timeout",
        type=float,
        default=120.0,
        help="seconds each step of the rollout may take",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(func=main)


def plan_from_args(args: argparse.Namespace) -> FleetPlan:
    """The plan of parsed ``args``; ``ValueError`` with a one-line reason when wrong."""
    if args.outages and args.outage:
        raise ValueError("use --outage or --outages random, not both")
    outages = tuple(OutageSpec.parse(text) for text in args.outage)
    if args.outages == "random":
        bare = FleetPlan(args.devices, args.rate, args.events)  # checks them first
        outages = random_outages(bare.things, bare.generation_s, args.seed)
    return FleetPlan(
        args.devices,
        args.rate,
        args.events,
        outages=outages,
        drain_timeout_s=args.drain_timeout,
        replay=args.replay,
    )


def rollout_from_args(args: argparse.Namespace) -> RolloutPlan | None:
    """The rollout of parsed ``args`` (None without ``--rollout``); ``ValueError`` when wrong."""
    extras = [f for f in ("new_model", "new_labels", "bad_model") if getattr(args, f)]
    if not args.rollout:
        if extras:
            flag = "--" + extras[0].replace("_", "-")
            raise ValueError(f"{flag} goes with --rollout")
        return None
    if args.replay is None:
        raise ValueError("--rollout needs --replay CLIP (the devices run the daemon)")
    if args.outage or args.outages:
        raise ValueError("--rollout runs without outages: drop --outage/--outages")
    if args.rollout_timeout <= 0:
        raise ValueError(f"--rollout-timeout must be > 0, got {args.rollout_timeout:g}")
    return RolloutPlan(args.new_model, args.new_labels, args.bad_model, args.rollout_timeout)


def main(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_args(args)
        rollout_plan = rollout_from_args(args)
    except ValueError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    say = (lambda _t: None) if args.json else _progress()
    rollout: Rollout | None = None
    with ExitStack() as stack:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-")))
        try:
            ensure_mosquitto()
            model = _replay_model(args.model) if plan.replay is not None else None
            if rollout_plan is not None and model is not None:
                rollout = Rollout(rollout_plan, workdir.resolve(), model, progress=say)
                stack.enter_context(rollout)
            fleet = Fleet(
                plan,
                workdir.resolve(),
                model=model,
                connect_timeout_s=args.connect_timeout,
                progress=say,
                on_phase=[rollout.on_phase] if rollout else [],
                replay_loop=rollout is not None,
                model_updates=rollout.model_updates if rollout else None,
            )
            report = fleet.run()
        # OSError: the rollout's file server or Jobs service could not start (a port, no SUBACK)
        except (BrokerError, PkiError, EdgeAppError, OSError) as exc:
            print(f"fleet: {exc}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            print("fleet: interrupted; nothing reported", file=sys.stderr)
            return 130
    outcome = None if rollout is None else rollout.report
    if args.json:
        doc = report.to_json()
        if outcome is not None:
            doc["rollout"] = outcome.to_json()
        print(json.dumps(doc))
    else:
        print_report(report)
        if outcome is not None:
            print_rollout(outcome)
    return 0 if report.complete and (outcome is None or outcome.ok) else 1


def _replay_model(chosen: Path | None) -> Path:
    """``chosen``, or the default model (pulled into the cache if it is not there yet)."""
    if chosen is not None:
        if not chosen.is_file():
            raise ModelError(f"--model {chosen}: no such file; give a .tflite model file")
        return chosen
    return pull(load_manifest().default_spec(), default_model_dir(), progress=None)


def _progress() -> Callable[[str], None]:
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)

    return say


def print_report(report: FleetReport) -> None:
    """The per-device table, the totals, the broker's load and the verdict, as text."""
    head = ("device", "raised", "delivered", "duplicates", "missing", "p50 s", "p99 s", "outages")
    rows = [
        (t.thing, t.raised, t.delivered, t.duplicates, t.missing, t.lag_p50_s, t.lag_p99_s,
         " ".join(t.outages) or "-")
        for t in report.devices
    ]  # fmt: skip
    tot = report.totals
    rows.append(
        ("total", int(tot["raised"]), int(tot["delivered"]), int(tot["duplicates"]),
         int(tot["missing"]), tot["lag_p50_s"], tot["lag_p99_s"], "")
    )  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" if i in (0, 7) else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*head))
    for row in rows:
        if row[0] == "total":
            print("  ".join("-" * w for w in widths))
        print(line.format(*row))
    b = report.broker
    print(
        f"broker: {b.publishes_received_per_s:g} publishes/s received, "
        f"{b.publishes_sent_per_s:g}/s sent (mean over {b.window_s:g} s); 1-min load peak "
        f"{b.load_received_1min_peak:g} msgs/min in, {b.load_sent_1min_peak:g} out; "
        f"{b.clients_peak} clients"
    )
    phases = ", ".join(f"{name} {s:g} s" for name, s in report.phases_s.items() if s)
    print(f"phases: {phases}; {int(tot['batches'])} batches; producers at most "
          f"{tot['behind_s']:g} s behind schedule")  # fmt: skip
    outboxes = "every outbox empty" if report.settled else "some outboxes still hold batches"
    if report.complete:
        print(
            f"result: complete, {int(tot['delivered'])} of {int(tot['raised'])} delivered; "
            f"{outboxes}"
        )
    else:
        missing = [t.thing for t in report.devices if t.missing]
        print(
            f"result: INCOMPLETE, {int(tot['missing'])} missing ({', '.join(missing) or '-'}); "
            f"{report.connected} of {len(report.devices)} devices connected"
        )


def print_rollout(report: RolloutReport) -> None:
    """Per device: both executions, the model before -> after, frames lost; both jobs."""
    head = ("device", "bad job", "new model job", "s", "model before -> after", "lost", "reason")
    rows = [
        (
            d.thing + (" (canary)" if d.canary else ""),
            d.bad_status or "-",
            d.status or "-",
            "-" if d.succeeded_s is None else f"{d.succeeded_s:g}",
            f"{d.model_before} -> {d.model_after or '?'}",
            d.lost_frames if d.lost_frames >= 0 else "?",
            _short(d.bad_reason or d.reason or "-"),
        )
        for d in report.devices
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" if i != 5 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print()
    print(line.format(*head))
    for row in rows:
        print(line.format(*row))
    bad, good = report.bad_job, report.good_job
    if bad:
        print(
            f"bad model job {bad['job_id']} ({bad['model']}): {bad['status']} "
            f"({bad['reason'] or '-'}) after {bad['canceled_s']} s"
        )
    if good:
        print(
            f"new model job {good['job_id']} ({good['model']}): {good['status']}, all "
            f"SUCCEEDED after {good['all_succeeded_s']} s"
        )
    if report.ok:
        print("rollout: as expected (canary rolled back, job canceled; new model everywhere, "
              "no frame lost)")  # fmt: skip
    else:
        print("rollout: FAILED: " + "; ".join(report.problems))


def _short(reason: str, chars: int = 90) -> str:
    """``reason`` for a table cell: paths as their file names, clipped."""
    text = re.sub(r"/[^\s:;]*/([^/\s:;]+)", r"\1", reason)
    text = re.sub(r"([0-9a-f]{8})[0-9a-f]{8,}", r"\1...", text)  # sha256-named downloads
    return text if len(text) <= chars else text[: chars - 3] + "..."
