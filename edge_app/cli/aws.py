"""``edge-app aws provision|claim|check|policy``: onboarding a device in AWS IoT Core.

``edge_app.aws`` (boto3, cryptography, certifi: the ``edge-app[aws]`` extra) is imported only
when one of these commands runs, so ``edge-app run`` never loads boto3 for them.
"""

from __future__ import annotations

__all__ = ["IotFactory", "register"]

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from edge_app.config import TlsConfig
from edge_app.errors import EdgeAppError

IotFactory = Callable[[str | None, str | None, str | None], Any]
"""Makes the boto3 ``iot`` client from (region, profile, endpoint_url); a seam for tests."""

_INSTALL = "pip install 'edge-app[aws]'"
_EXIT_FAILED = 1
_EXIT_ERROR = 2


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    iot_factory: IotFactory | None = None,
) -> None:
    parser = sub.add_parser(
        "aws", help="onboard this device in AWS IoT Core: provision, check, print the policy"
    )
    cmds = parser.add_subparsers(dest="aws_command", required=True, metavar="ACTION")

    prov = cmds.add_parser(
        "provision",
        help="create the thing, its certificate (from a key made here) and the least-privilege "
        "policy, and write the device's config and TLS files; idempotent",
        description="Makes the private key on this device and has AWS IoT sign a CSR for it "
        "(the key never leaves the device); creates the thing (and adds it to --group), "
        "creates or reuses the policy, attaches them, looks up the iot:Data-ATS endpoint and "
        "writes edge-app.yaml, device.pem.crt, private.pem.key and AmazonRootCA1.pem (0600) "
        "into --out, with provision.json recording what was created. Running it again changes "
        "nothing; --teardown removes exactly what it created. Uses boto3's credentials "
        "(aws configure, AWS_PROFILE, --profile).",
    )
    prov.add_argument("--thing", required=True, help="AWS IoT thing name (= MQTT client id)")
    prov.add_argument("--region", help="AWS region (default: the profile's, or AWS_REGION)")
    prov.add_argument("--group", help="thing group to add the thing to (created if missing)")
    prov.add_argument(
        "--out", type=Path, help="folder for the files (created 0700; default: ./THING)"
    )
    prov.add_argument(
        "--policy", default=None, help="IoT policy name (default: edge-app-device, one per fleet)"
    )
    prov.add_argument("--profile", help="AWS profile of the credentials to use")
    prov.add_argument(
        "--endpoint-url", help="AWS IoT control-plane endpoint (a VPC endpoint, or a test server)"
    )
    prov.add_argument(
        "--teardown",
        action="store_true",
        help="remove what provision created for THING (recorded in OUT/provision.json): "
        "certificate, and the thing, group and policy if it created them and nobody else uses "
        "them; then the key, certificate and CA files. The config and data stay.",
    )
    prov.set_defaults(func=lambda a: _provision(a, iot_factory))

    claim = cmds.add_parser(
        "claim",
        help="fleet provisioning by claim: get this device's own certificate and thing over "
        "MQTT with a shared claim certificate (no AWS credentials needed)",
        description="Makes the private key here, sends a CSR to "
        "$aws/certificates/create-from-csr/json with the claim certificate, then registers the "
        "thing through $aws/provisioning-templates/TEMPLATE/provision/json with the ownership "
        "token and --param values; writes device.pem.crt and (if absent) edge-app.yaml beside "
        "the key in --out (0600). A folder that already holds device.pem.crt is refused.",
    )
    claim.add_argument("--endpoint", required=True, help="the iot:Data-ATS endpoint host")
    claim.add_argument("--port", type=int, default=8883, help="MQTT port (8883)")
    claim.add_argument("--claim-cert", type=Path, required=True, help="claim certificate (PEM)")
    claim.add_argument("--claim-key", type=Path, required=True, help="its private key (PEM)")
    claim.add_argument(
        "--ca", type=Path, help="CA of the endpoint (default: Amazon Root CA 1, from certifi)"
    )
    claim.add_argument("--template", required=True, help="fleet provisioning template name")
    claim.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter, e.g. SerialNumber=0042 (repeatable)",
    )
    claim.add_argument("--out", type=Path, required=True, help="folder for the device's files")
    claim.add_argument("--region", help="AWS region for the config (default: from --endpoint)")
    claim.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each answer (10)"
    )
    claim.set_defaults(func=_claim)

    check = cmds.add_parser(
        "check",
        help="walk config, files, DNS, TLS, MQTT CONNECT, publish and shadow get; print each "
        "step with its fix",
        description="Stop the daemon first: the check connects with the device's client id "
        "(a broker drops an older connection with the same id). It publishes one non-retained "
        '{"state": "check"} message on the status topic. Exit 0: every step passed (or was '
        "skipped); 1: a step failed.",
    )
    check.add_argument("--config", type=Path, required=True, help="the device's YAML config")
    check.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each answer (10)"
    )
    check.add_argument(
        "--registry",
        action="store_true",
        help="also look the certificate up in AWS IoT (ACTIVE, attached to the thing and a "
        "policy); needs AWS credentials",
    )
    check.add_argument("--region", help="region of the lookup (default: from uplink.host)")
    check.add_argument("--profile", help="AWS profile of the lookup's credentials")
    check.add_argument("--endpoint-url", help="AWS IoT control-plane endpoint of the lookup")
    check.set_defaults(func=lambda a: _check(a, iot_factory))

    policy = cmds.add_parser(
        "policy", help="print the least-privilege IoT policy document provision creates"
    )
    policy.add_argument("--account", required=True, help="12-digit AWS account id")
    policy.add_argument("--region", required=True, help="AWS region, e.g. eu-west-1")
    policy.add_argument("--partition", default="aws", help="aws (default), aws-cn, aws-us-gov")
    policy.set_defaults(func=_policy)


def _aws() -> ModuleType | None:
    try:
        from edge_app import aws  # noqa: PLC0415  (boto3 & co. only for these commands)
    except ImportError as exc:
        print(
            f"edge-app aws: the aws commands need the {exc.name} package: {_INSTALL}",
            file=sys.stderr,
        )
        return None
    return aws


def _factory(aws: ModuleType, given: IotFactory | None) -> IotFactory:
    if given is not None:
        return given
    make: IotFactory = lambda region, profile, url: aws.iot_client(  # noqa: E731
        region, profile=profile, endpoint_url=url
    )
    return make


def _provision(args: argparse.Namespace, iot_factory: IotFactory | None) -> int:
    aws = _aws()
    if aws is None:
        return _EXIT_ERROR
    folder: Path = args.out or Path(args.thing)
    make = _factory(aws, iot_factory)
    try:
        if args.teardown:
            return _teardown(args, aws, make, folder)
        iot = aws.IotCalls(make(args.region, args.profile, args.endpoint_url))
        policy = args.policy or aws.DEFAULT_POLICY_NAME
        report = aws.provision(iot, folder, args.thing, group=args.group, policy=policy)
    except EdgeAppError as exc:
        print(f"edge-app aws provision: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    record = report.record
    print(f"provisioned thing {record.thing} in {record.region} ({report.seconds:.2f} s):")
    _print_steps(report.steps)
    print(
        f"next: replace the placeholder camera in {report.config}, then run "
        f"`edge-app aws check --config {report.config}`"
    )
    return 0


def _teardown(args: argparse.Namespace, aws: ModuleType, make: IotFactory, folder: Path) -> int:
    """``--teardown``; in the region recorded by provision unless --region says otherwise."""
    record = aws.load_record(folder)
    region = args.region or (record.region if record is not None else None)
    iot = aws.IotCalls(make(region, args.profile, args.endpoint_url))
    done = aws.teardown(iot, folder, thing=args.thing)
    print(f"tore down thing {done.thing} ({done.seconds:.2f} s):")
    _print_steps(done.steps)
    return 0


def _claim(args: argparse.Namespace) -> int:
    aws = _aws()
    if aws is None:
        return _EXIT_ERROR
    try:
        parameters = dict(_key_value(p) for p in args.param)
        ca = args.ca
        if ca is None:
            ca = args.out / "AmazonRootCA1.pem"
            aws.write_amazon_root_ca1(ca)
        tls = TlsConfig(ca=ca, cert=args.claim_cert, key=args.claim_key)
        region = args.region or aws.region_of_host(args.endpoint) or "us-east-1"
        report = aws.claim(
            args.endpoint,
            args.port,
            claim_tls=tls,
            template=args.template,
            parameters=parameters,
            folder=args.out,
            region=region,
            timeout_s=args.timeout,
        )
    except EdgeAppError as exc:
        print(f"edge-app aws claim: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    print(
        f"claimed thing {report.thing} (certificate {report.certificate_id}); config: "
        f"{report.config}; next: edge-app aws check --config {report.config}"
    )
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise EdgeAppError(f"--param {text!r}: write KEY=VALUE, e.g. --param SerialNumber=0042")
    return key, value


def _print_steps(steps: Any) -> None:
    width = max((len(s.kind) for s in steps), default=0)
    for step in steps:
        print(f"  {step.kind:<{width}}  {step.name}: {step.outcome}")


def _check(args: argparse.Namespace, iot_factory: IotFactory | None) -> int:
    aws = _aws()
    if aws is None:
        return _EXIT_ERROR
    registry = None
    if args.registry:
        make = _factory(aws, iot_factory)

        def registry(facts: Any, config: Any) -> Any:
            region = args.region or aws.region_of(config)
            try:
                iot = aws.IotCalls(make(region, args.profile, args.endpoint_url))
            except EdgeAppError as exc:
                return aws.CheckStep("registry", "skip", f"cannot look it up: {exc}")
            return aws.registry_check(iot, facts, config.device.thing_name)

    ok_mark, fail_mark, skip_mark = _marks()
    marks = {"ok": ok_mark, "fail": fail_mark, "skip": skip_mark}
    print(f"edge-app aws check: {args.config}")
    failed = False
    for step in aws.run_check(args.config, timeout_s=args.timeout, registry=registry):
        print(f"{marks[step.status]} {step.name:<8}  {step.detail}", flush=True)
        if step.status == "fail":
            failed = True
            print(f"  fix: {step.fix}", flush=True)
    return _EXIT_FAILED if failed else 0


def _marks() -> tuple[str, str, str]:
    """Check marks, or plain words where stdout cannot encode them (an ASCII locale)."""
    try:
        "✓✗·".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "ok  ", "FAIL", "skip"
    return "✓", "✗", "·"


def _policy(args: argparse.Namespace) -> int:
    aws = _aws()
    if aws is None:
        return _EXIT_ERROR
    try:
        document = aws.device_policy(args.partition, args.region, args.account)
    except ValueError as exc:
        print(f"edge-app aws policy: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    print(json.dumps(document, indent=2))
    return 0
