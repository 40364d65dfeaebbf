"""deploy/aws/edge-app.yaml: cfn-lint clean, least privilege, and wired to what the device
sends and the Lambda reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from simulator.iot_rules import EVENTS_FIELDS, STATUS_FIELDS
from tests.conftest import REPO_ROOT

TEMPLATE = REPO_ROOT / "deploy" / "aws" / "edge-app.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    doc, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return dict(doc)


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


@pytest.mark.slow
def test_cfn_lint_finds_nothing() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run(
        [str(cfn_lint), "--format", "parseable", str(TEMPLATE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_role_is_least_privilege(template: dict[str, Any]) -> None:
    """No wildcard action; a wildcard resource only where AWS has no resource type
    (PutMetricData), and then confined by a namespace condition."""
    statements = [
        s
        for role in resources(template, "AWS::IAM::Role").values()
        for policy in role["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    assert len(statements) >= 8
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), s
        targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        if "*" in targets:
            assert actions == ["cloudwatch:PutMetricData"], s
            assert "cloudwatch:namespace" in s["Condition"]["StringEquals"], s
    for role in resources(template, "AWS::IAM::Role").values():
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"]["Service"] in {"lambda.amazonaws.com", "iot.amazonaws.com"}


def _sql(rule: dict[str, Any]) -> str:
    sql = rule["Properties"]["TopicRulePayload"]["Sql"]
    return str(sql["Fn::Sub"] if isinstance(sql, dict) else sql)


def _selected(sql: str) -> set[str]:
    """The output fields of an IoT SQL SELECT: each column's alias, or its bare name."""
    select = sql.split(" FROM ", maxsplit=1)[0].removeprefix("SELECT ")
    columns, depth, start = [], 0, 0
    for i, ch in enumerate(select + ","):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            columns.append(select[start:i].strip())
            start = i + 1
    return {c.rsplit(" AS ", 1)[-1] for c in columns}


def test_rules_hand_the_lambda_what_it_reads(template: dict[str, Any]) -> None:
    rules = resources(template, "AWS::IoT::TopicRule")
    events, status = _sql(rules["EventsRule"]), _sql(rules["StatusRule"])
    assert _selected(events) == set(EVENTS_FIELDS)
    assert "encode(*, 'base64') AS payload" in events  # binary (compressed) payloads
    assert "get_mqtt_property('content_type') AS content_type" in events
    assert events.endswith("FROM '${TopicRoot}/+/events'")
    assert _selected(status) == set(STATUS_FIELDS)
    assert _sql(rules["SnapshotsRule"]).endswith("FROM '${TopicRoot}/+/snapshots/+'")
    assert _sql(rules["MetricsRule"]).endswith("FROM '${TopicRoot}/+/metrics'")
    for name in ("EventsRule", "StatusRule"):
        (action,) = rules[name]["Properties"]["TopicRulePayload"]["Actions"]
        assert action["Lambda"]["FunctionArn"] == {"Fn::GetAtt": ["Consumer", "Arn"]}
    permissions = resources(template, "AWS::Lambda::Permission").values()
    allowed = {p["Properties"]["SourceArn"]["Fn::GetAtt"][0] for p in permissions}
    assert allowed == {"EventsRule", "StatusRule", "SweepSchedule"}


def test_the_lambda_environment_is_what_the_handler_reads(template: dict[str, Any]) -> None:
    handler = (REPO_ROOT / "deploy" / "lambda" / "handler.py").read_text()
    read = set(re.findall(r'env(?:iron)?(?:\.get\(|\[)"([A-Z_]+)"', handler))
    variables = template["Resources"]["Consumer"]["Properties"]["Environment"]["Variables"]
    assert set(variables) == read - {"AWS_ENDPOINT_URL"}


def test_storage_is_encrypted_private_and_expires(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["EventsBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    prefixes = {r["Prefix"] for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert prefixes == {"events/", "rejected/", "snapshots/", "errors/"}
    for name in ("EventIdsTable", "DevicesTable"):
        assert template["Resources"][name]["Properties"]["SSESpecification"]["SSEEnabled"]
    ttl = template["Resources"]["EventIdsTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires", "Enabled": True}
    assert template["Resources"]["ReviewQueue"]["Properties"]["FifoQueue"] is True
