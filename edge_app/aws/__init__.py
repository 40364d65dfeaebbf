"""Device onboarding in AWS IoT: ``edge-app aws provision``, ``aws check`` and the policy.

Needs the ``edge-app[aws]`` extra (boto3, cryptography, certifi). The daemon never imports
this package; the CLI imports it only when an ``aws`` command runs.
"""

from edge_app.aws.claim import ClaimReport, claim
from edge_app.aws.credentials import write_amazon_root_ca1
from edge_app.aws.doctor import CheckStep, run_check
from edge_app.aws.iot import IotCalls, iot_client
from edge_app.aws.policy import (
    DEFAULT_POLICY_NAME,
    THING,
    TOPIC_PREFIX,
    claim_policy,
    device_policy,
)
from edge_app.aws.probe import Answer, MqttProbe
from edge_app.aws.provision import ProvisionReport, Step, provision
from edge_app.aws.record import ProvisionRecord, load_record
from edge_app.aws.registry import region_of, region_of_host, registry_check
from edge_app.aws.teardown import TeardownReport, teardown

__all__ = [
    "DEFAULT_POLICY_NAME",
    "THING",
    "TOPIC_PREFIX",
    "Answer",
    "CheckStep",
    "ClaimReport",
    "IotCalls",
    "MqttProbe",
    "ProvisionRecord",
    "ProvisionReport",
    "Step",
    "TeardownReport",
    "claim",
    "claim_policy",
    "device_policy",
    "iot_client",
    "load_record",
    "provision",
    "region_of",
    "region_of_host",
    "registry_check",
    "run_check",
    "teardown",
    "write_amazon_root_ca1",
]
