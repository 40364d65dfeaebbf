"""The policy ``provision`` puts into AWS IoT is least privilege, read back and parsed here:
no ``iot:*`` or other wildcard action, no ``*`` resource beyond the thing's own prefixes, only
this account and region, and no topic of another thing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from edge_app.aws import THING, IotCalls, claim_policy, device_policy, provision
from simulator.acl import policy_acl

ACCOUNT = ("aws", "eu-west-1", "123456789012")
ALLOWED_ACTIONS = {
    "iot:Connect",
    "iot:Publish",
    "iot:RetainPublish",
    "iot:Subscribe",
    "iot:Receive",
}
OWN_PREFIXES = (
    f"edge-app/{THING}/",
    f"$aws/things/{THING}/shadow/name/edge-config/",
    f"$aws/things/{THING}/jobs/",
)
ARN = re.compile(r"^arn:(?P<part>[a-z-]+):iot:(?P<region>[^:]+):(?P<account>[^:]+):(?P<rest>.+)$")


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def problems(policy: dict[str, Any], partition: str, region: str, account: str) -> list[str]:
    """Everything in ``policy`` that is wider than one thing's own resources."""
    found = []
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            found.append(f"unexpected effect {statement['Effect']}")
        for action in as_list(statement["Action"]):
            if "*" in action or action not in ALLOWED_ACTIONS:
                found.append(f"action {action}")
        for resource in as_list(statement["Resource"]):
            match = ARN.match(resource)
            if match is None:
                found.append(f"resource {resource} is not an IoT ARN")
                continue
            if (match["part"], match["region"], match["account"]) != (partition, region, account):
                found.append(f"resource {resource} is not in {partition}/{region}/{account}")
            kind, _, name = match["rest"].partition("/")
            if kind == "client":
                if name != THING:
                    found.append(f"connect resource {resource}")
            elif kind in ("topic", "topicfilter"):
                prefix = next((p for p in OWN_PREFIXES if name.startswith(p)), None)
                if prefix is None:
                    found.append(f"{resource} is outside the thing's own prefixes")
                elif "?" in name or name.count("${") != 1:
                    # a `*` can only follow the thing's own prefix; `?` and other variables
                    # (${iot:ClientId}, ...) have no place here
                    found.append(f"{resource} has a wildcard or variable at the wrong place")
            else:
                found.append(f"resource type {kind} in {resource}")
    return found


def test_the_policy_document_is_least_privilege() -> None:
    policy = device_policy(*ACCOUNT)
    assert problems(policy, *ACCOUNT) == []
    connect = next(s for s in policy["Statement"] if s["Action"] == "iot:Connect")
    assert connect["Condition"]["Bool"] == {"iot:Connection.Thing.IsAttached": "true"}
    resources = {r for s in policy["Statement"] for r in as_list(s["Resource"])}
    # the device may ask for and report its shadow, never delete it; no classic shadow
    assert not any(r.endswith("/delete") for r in resources)
    assert not any("/shadow/" in r and "/shadow/name/" not in r for r in resources)
    retained = next(s for s in policy["Statement"] if s["Action"] == "iot:RetainPublish")
    names = [ARN.match(r)["rest"] for r in retained["Resource"]]  # type: ignore[index]
    assert names == [f"topic/edge-app/{THING}/status"]


def test_the_checker_finds_what_is_too_wide() -> None:
    """The checker above is not vacuous: each widening of the policy is reported."""
    arn = "arn:aws:iot:eu-west-1:123456789012"
    widened = [
        {"Effect": "Allow", "Action": "iot:*", "Resource": f"{arn}:topic/edge-app/{THING}/x"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/edge-app/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{arn}:topic/$aws/things/*"},
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/*"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/x"},
        {"Effect": "Allow", "Action": "iot:DeleteThingShadow", "Resource": f"{arn}:thing/x"},
    ]
    for statement in widened:
        assert problems({"Statement": [statement]}, *ACCOUNT), statement


def test_the_policy_in_aws_iot_is_the_least_privilege_one(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    provision(iot, tmp_path / "dev", thing_name, policy=f"lp-{thing_name}")
    stored = iot.call("get_policy", policyName=f"lp-{thing_name}")["policyDocument"]
    policy = json.loads(stored)
    assert problems(policy, "aws", "us-east-1", "123456789012") == []
    assert policy == device_policy("aws", "us-east-1", "123456789012")


@pytest.mark.parametrize(
    ("partition", "region", "account"),
    [("aws", "eu-west-1", "12345"), ("aws", "*", "123456789012"), ("a*", "eu-west-1", "1" * 12)],
)
def test_malformed_arn_parts_are_refused(partition: str, region: str, account: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        device_policy(partition, region, account)


def test_the_mosquitto_mirror_is_never_wider_than_the_policy() -> None:
    acl = policy_acl(device_policy(*ACCOUNT), ["a", "b"])
    patterns = [line.split(" ", 2)[1:] for line in acl.splitlines() if line.startswith("pattern")]
    assert patterns
    assert all(topic.count("%c") == 1 and "#" not in topic for _, topic in patterns)
    assert "user a\ntopic deny edge-app/b/#\ntopic deny $aws/things/b/#\n" in acl
    arn = "arn:aws:iot:eu-west-1:123456789012"
    for statement in (
        {"Effect": "Deny", "Action": "iot:Publish", "Resource": f"{arn}:topic/x"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/edge-app/x*"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/${{iot:ClientId}}"},
        {"Effect": "Allow", "Action": "iot:GetThingShadow", "Resource": f"{arn}:thing/x"},
    ):
        with pytest.raises(ValueError):
            policy_acl({"Statement": [statement]}, ["a"])


def test_the_claim_policy_allows_only_provisioning() -> None:
    policy = claim_policy(*ACCOUNT, "edge-app")
    actions = {a for s in policy["Statement"] for a in as_list(s["Action"])}
    assert actions == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}
    by_action = {s["Action"]: [ARN.match(r)["rest"] for r in as_list(s["Resource"])]  # type: ignore[index]
                 for s in policy["Statement"]}  # fmt: skip
    assert by_action["iot:Publish"] == [
        "topic/$aws/certificates/create-from-csr/json",
        "topic/$aws/provisioning-templates/edge-app/provision/json",
    ]
    answers = {name.split("/", 1)[1] for name in by_action["iot:Receive"]}
    assert answers == {f"{r}/{o}" for r in (
        "$aws/certificates/create-from-csr/json",
        "$aws/provisioning-templates/edge-app/provision/json",
    ) for o in ("accepted", "rejected")}  # fmt: skip
    assert {n.split("/", 1)[1] for n in by_action["iot:Subscribe"]} == answers
    topics = [n.split("/", 1)[1] for k, ns in by_action.items() if k != "iot:Connect" for n in ns]
    prefixes = ("$aws/certificates/create-from-csr/", "$aws/provisioning-templates/edge-app/")
    assert all(t.startswith(prefixes) for t in topics), topics  # no device topic, no shadow
    with pytest.raises(ValueError, match="invalid template name"):
        claim_policy(*ACCOUNT, "a/b")
