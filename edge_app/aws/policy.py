"""The AWS IoT policy of an edge-app device: least privilege, written with policy variables.

One policy serves the whole fleet: every resource names the connecting thing through
``${iot:Connection.Thing.ThingName}``, which AWS IoT Core sets to the MQTT client id and resolves
only when a thing of that name is attached to the certificate that connected. So a device may

* connect only with its own thing name as client id (``iot:Connect`` on ``client/<thing>``),
  only with a thing attached to its certificate, and only with a clean session (the one connect
  attribute allowed is ``LastWill``, the retained ``offline`` status);
* publish only its own events, metrics, status and snapshots (``edge-app/<thing>/...``, the
  MQTT contract, docs/events.md) and retain only its status;
* talk only to its own ``edge-config`` named shadow (publish ``get`` and ``update``, receive the
  answers ``ShadowClient`` subscribes to; never ``delete``) and its own IoT Jobs: exactly the
  requests and answers of ``JobsAgent`` (``JobTopics``: ``start-next``, ``<job>/get``,
  ``<job>/update`` and their answers, ``notify-next``).

Nothing else: no ``iot:*`` action, no ``*`` resource, no other thing's topics, no classic
shadow, no ``$aws/events``. ``docs/aws-device.md`` explains each statement.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_POLICY_NAME",
    "JOBS_PUBLISH",
    "JOBS_RECEIVE",
    "THING",
    "TOPIC_PREFIX",
    "UPLINK_TOPICS",
    "claim_policy",
    "device_policy",
]

import re
from typing import Any

from edge_app.remote.jobs import JobTopics
from edge_app.remote.shadow import ShadowTopics

DEFAULT_POLICY_NAME = "edge-app-device"
"""Name of the policy ``edge-app aws provision`` creates or reuses (one for the fleet)."""
THING = "${iot:Connection.Thing.ThingName}"
"""The policy variable of the connecting thing's name (= its MQTT client id)."""
TOPIC_PREFIX = "edge-app/{thing}"
"""The default ``uplink.topic_prefix``; the policy covers this prefix only."""
UPLINK_TOPICS = ("events", "metrics", "status", "snapshots/*")
"""What the daemon publishes under its prefix (docs/events.md); ``*`` is one event id."""
_RETAINED = ("status",)
"""The one topic published with the retain flag (``online``/``offline``/``stopped``)."""
_JOBS = JobTopics(THING)
JOBS_PUBLISH = tuple(t.replace("/+/", "/*/") for t in _JOBS.requests)
"""The IoT Jobs requests the agent sends (``JobTopics.requests``; ``*``: a job id)."""
JOBS_RECEIVE = tuple(t.replace("/+/", "/*/") for t in _JOBS.subscribed)
"""The IoT Jobs answers and notifications the agent subscribes to (``JobTopics.subscribed``)."""
_ARN_PART = re.compile(r"^[a-z0-9-]{1,64}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_TEMPLATE = re.compile(r"^[0-9A-Za-z_-]{1,36}$")


def _arn(partition: str, region: str, account: str) -> str:
    if not (_ARN_PART.match(partition) and _ARN_PART.match(region)):
        raise ValueError(f"invalid partition {partition!r} or region {region!r}")
    if not _ACCOUNT.match(account):
        raise ValueError(f"invalid AWS account id {account!r}: 12 digits")
    return f"arn:{partition}:iot:{region}:{account}"


def device_policy(partition: str, region: str, account: str) -> dict[str, Any]:
    """The policy document (a JSON-ready dict) for account ``account`` in ``region``.

    ``partition`` is ``aws`` (or ``aws-cn``, ``aws-us-gov``). Raises ``ValueError`` for a
    malformed partition, region or account id: they are spliced into every ARN.
    """
    arn = _arn(partition, region, account)
    own = TOPIC_PREFIX.format(thing=THING)
    shadow = ShadowTopics(THING)
    publish = [f"{own}/{t}" for t in UPLINK_TOPICS]
    publish += list(shadow.requests) + list(JOBS_PUBLISH)
    receive = list(shadow.subscribed) + list(JOBS_RECEIVE)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsOwnThingOnly",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{THING}",
                "Condition": {
                    "Bool": {"iot:Connection.Thing.IsAttached": "true"},
                    "ForAllValues:StringEquals": {"iot:ConnectAttributes": ["LastWill"]},
                },
            },
            {
                "Sid": "PublishOwnTopics",
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [f"{arn}:topic/{t}" for t in publish],
            },
            {
                "Sid": "RetainOwnStatus",
                "Effect": "Allow",
                "Action": "iot:RetainPublish",
                "Resource": [f"{arn}:topic/{own}/{t}" for t in _RETAINED],
            },
            {
                "Sid": "SubscribeOwnAnswers",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{arn}:topicfilter/{t}" for t in receive],
            },
            {
                "Sid": "ReceiveOwnAnswers",
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": [f"{arn}:topic/{t}" for t in receive],
            },
        ],
    }


def claim_policy(partition: str, region: str, account: str, template: str) -> dict[str, Any]:
    """The policy of a *claim* certificate (fleet provisioning by claim, ``edge-app aws
    claim``): shared by a batch of devices, it allows only the two provisioning requests for
    ``template`` and their answers; no device topic, no shadow. Raises ``ValueError`` for
    malformed ARN parts or template name."""
    arn = _arn(partition, region, account)
    if not _TEMPLATE.match(template):
        raise ValueError(f"invalid template name {template!r}: 1-36 of A-Z a-z 0-9 _ -")
    requests = [
        "$aws/certificates/create-from-csr/json",
        f"$aws/provisioning-templates/{template}/provision/json",
    ]
    answers = [f"{r}/{outcome}" for r in requests for outcome in ("accepted", "rejected")]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # The devices of a batch share the claim certificate and have no thing yet,
                # so no client id can be named; all the certificate allows is below.
                "Sid": "ConnectToProvision",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/*",
            },
            {
                "Sid": "AskForCertificateAndThing",
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [f"{arn}:topic/{t}" for t in requests],
            },
            {
                "Sid": "SubscribeToAnswers",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{arn}:topicfilter/{t}" for t in answers],
            },
            {
                "Sid": "ReceiveAnswers",
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": [f"{arn}:topic/{t}" for t in answers],
            },
        ],
    }
