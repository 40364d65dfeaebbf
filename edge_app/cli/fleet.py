"""``edge-app fleet rollout|status|cancel``: model and config rollouts to a thing group with
AWS IoT Jobs, and the fleet view (docs/deploy.md, "Fleet rollouts").

``edge_app.aws`` (boto3: the ``edge-app[aws]`` extra) is imported only when one of these
commands runs. Every AWS error is one line on stderr, exit code 2.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from edge_app.errors import EdgeAppError, ProvisionError
from edge_app.models import Registry, default_model_dir, split_ref

_INSTALL = "pip install 'edge-app[aws]'"
_EXIT_ERROR = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "fleet", help="roll a model or config out to a thing group (AWS IoT Jobs); the fleet view"
    )
    cmds = parser.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    roll = cmds.add_parser(
        "rollout",
        help="create an AWS IoT Job that moves a thing group to a model or a config overlay",
        description="Creates a snapshot job for the thing group's devices: a model-update job "
        "(the offer's sha256 and size are computed here from the file or the registry entry; "
        "devices download it from --url) or a config job (the overlay is laid over each "
        "device's file, like the edge-config shadow's desired state). --canary N starts with "
        "N devices a minute and doubles each time N more succeeded; --max-per-minute caps the "
        "pace. --abort-failed-percent P cancels the job once P %% of the finished executions "
        "failed, were rejected or timed out, after at least --abort-min-executed devices were "
        "notified (AWS's minNumberOfExecutedThings).",
    )
    what = roll.add_mutually_exclusive_group(required=True)
    what.add_argument("--model-entry", metavar="NAME@VERSION", help="a local registry entry")
    what.add_argument("--model", type=Path, metavar="FILE", help="a .tflite file")
    what.add_argument("--config", type=Path, metavar="OVERLAY", help="a YAML remote overlay")
    roll.add_argument("--group", required=True, help="the thing group to roll out to")
    roll.add_argument("--url", help="https URL the devices download the model from")
    roll.add_argument(
        "--ref",
        metavar="NAME@VERSION",
        help="registry identity of --model on the devices (default: file stem @ sha256[:8])",
    )
    roll.add_argument(
        "--model-dir", type=Path, help="model cache holding the registry (for --model-entry)"
    )
    roll.add_argument("--canary", type=_positive, metavar="N", help="devices in the first minute")
    roll.add_argument("--max-per-minute", type=_positive, metavar="M", help="rollout pace cap")
    roll.add_argument(
        "--abort-failed-percent", type=_percent, metavar="P", help="abort threshold, percent"
    )
    roll.add_argument(
        "--abort-min-executed",
        type=_positive,
        default=1,
        metavar="K",
        help="devices notified before the abort rule applies (1)",
    )
    roll.add_argument(
        "--timeout-minutes", type=_positive, metavar="T", help="IN_PROGRESS longer: TIMED_OUT"
    )
    roll.add_argument("--job-id", help="job id (default: edge-app-OPERATION-UTCTIME)")
    _aws_options(roll)
    roll.set_defaults(func=_with_aws(_rollout))

    status = cmds.add_parser(
        "status",
        help="per device of the group: the job's execution status and reason, and the model "
        "and config version its edge-config shadow reports",
    )
    status.add_argument("--group", required=True, help="the thing group")
    status.add_argument("--job", help="the job id whose executions to show")
    status.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    _aws_options(status)
    status.add_argument(
        "--data-endpoint-url",
        help="iot-data endpoint for the shadows (default: the account's iot:Data-ATS one)",
    )
    status.set_defaults(func=_with_aws(_status))

    cancel = cmds.add_parser(
        "cancel", help="cancel a rollout: queued executions are canceled, running ones finish"
    )
    cancel.add_argument("--job", required=True, help="the job id")
    _aws_options(cancel)
    cancel.set_defaults(func=_with_aws(_cancel))


def _aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: the profile's, or AWS_REGION)")
    parser.add_argument("--profile", help="AWS profile of the credentials to use")
    parser.add_argument("--endpoint-url", help="AWS IoT control-plane endpoint (or a test server)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _percent(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 100, not {value}")
    return value


Command = Callable[[argparse.Namespace, ModuleType, ModuleType], int]


def _with_aws(command: Command) -> Callable[[argparse.Namespace], int]:
    """``command`` run with ``edge_app.aws.iot`` and ``edge_app.aws.rollout``, imported only
    now (boto3 only for these commands); without them, one line saying what to install."""

    def run(args: argparse.Namespace) -> int:
        try:
            from edge_app.aws import iot, rollout  # noqa: PLC0415
        except ImportError as exc:
            print(f"edge-app fleet: needs the {exc.name} package: {_INSTALL}", file=sys.stderr)
            return _EXIT_ERROR
        return command(args, iot, rollout)

    return run


def _iot_calls(args: argparse.Namespace, iot_mod: ModuleType) -> Any:
    """The operator's IoT control-plane client (``edge_app.aws.iot.IotCalls``) from the AWS
    options every fleet command takes."""
    return iot_mod.IotCalls(
        iot_mod.iot_client(args.region, profile=args.profile, endpoint_url=args.endpoint_url)
    )


def _fail(action: str, message: object) -> int:
    print(f"edge-app fleet {action}: {message}", file=sys.stderr)
    return _EXIT_ERROR


def _rollout(args: argparse.Namespace, iot_mod: ModuleType, rollout: ModuleType) -> int:
    try:
        document = _document(args, rollout)
        operation = "model" if document["operation"] == "model-update" else "config"
        job_id = args.job_id or rollout.new_job_id(operation)
        request = rollout.job_request(
            job_id,
            "placeholder",
            document,
            canary=args.canary,
            max_per_minute=args.max_per_minute,
            abort_percent=args.abort_failed_percent,
            abort_min_executed=args.abort_min_executed,
            timeout_minutes=args.timeout_minutes,
        )
        iot = _iot_calls(args, iot_mod)
        created = rollout.create_rollout(iot, args.group, request)
    except (EdgeAppError, OSError) as exc:
        return _fail("rollout", exc)
    except yaml.YAMLError as exc:
        # PyYAML's message spans lines (the mark and a caret): one line for the user
        return _fail("rollout", f"{args.config} is not valid YAML: {' '.join(str(exc).split())}")
    print(f"created job {created['jobId']} for thing group {args.group}: {created['jobArn']}")
    print(f"watch it: edge-app fleet status --group {args.group} --job {created['jobId']}")
    return 0


def _document(args: argparse.Namespace, rollout: ModuleType) -> dict[str, Any]:
    if args.config is not None:
        overlay = yaml.safe_load(args.config.read_text(encoding="utf-8"))
        document: dict[str, Any] = rollout.config_document(overlay)
        return document
    if not args.url:
        raise EdgeAppError("a model rollout needs --url: where the devices download it from")
    try:
        if args.model_entry is not None:
            name, version = split_ref(args.model_entry)
            registry = Registry(args.model_dir or default_model_dir())
            entry = registry.get(name, version)
            file = registry.file_of(entry)
        else:
            file = args.model
            name, version = split_ref(args.ref) if args.ref else rollout.default_ref(file)
    except ValueError as exc:
        raise ProvisionError(str(exc)) from exc
    return dict(rollout.model_document(file, args.url, name, version))


def _status(args: argparse.Namespace, iot_mod: ModuleType, rollout: ModuleType) -> int:
    try:
        iot = _iot_calls(args, iot_mod)
        data = rollout.data_client(
            iot, region=args.region, profile=args.profile, endpoint_url=args.data_endpoint_url
        )
        rows = rollout.fleet_status(iot, data, args.group, args.job)
    except EdgeAppError as exc:
        return _fail("status", exc)
    if args.json:
        for row in rows:
            print(json.dumps({k: getattr(row, k) for k in row.__slots__}))
        return 0
    header = ("THING", "EXECUTION", "STAGE", "MODEL", "CONFIG", "REASON")
    table = [header] + [
        (r.thing, r.execution, r.stage or "-", r.model, r.config_version, r.reason or "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    if not rows:
        print(f"(thing group {args.group} has no things)")
    return 0


def _cancel(args: argparse.Namespace, iot_mod: ModuleType, rollout: ModuleType) -> int:
    try:
        iot = _iot_calls(args, iot_mod)
        rollout.cancel_rollout(iot, args.job)
    except EdgeAppError as exc:
        return _fail("cancel", exc)
    print(f"canceled job {args.job}: queued executions are canceled, running ones finish")
    return 0
