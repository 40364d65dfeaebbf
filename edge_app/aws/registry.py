"""The ``registry`` step of ``edge-app aws check --registry``: what AWS IoT knows of the device.

Looks the device certificate up by its id (the SHA-256 of its DER, which is how AWS IoT names
certificates) and checks the three things a connection needs besides the files: the
certificate is ACTIVE, it is attached to the thing, and at least one policy is attached to
it. Needs AWS credentials allowed ``iot:DescribeCertificate``, ``iot:ListPrincipalThings``
and ``iot:ListAttachedPolicies``; without them the step is skipped and says why (the device
itself normally has no such credentials: run the check where the installer's are).
"""

from __future__ import annotations

__all__ = ["region_of", "region_of_host", "registry_check"]

import re

from edge_app.aws.credentials import CertificateFacts
from edge_app.aws.doctor import CheckStep
from edge_app.aws.iot import IotCalls
from edge_app.aws.policy import DEFAULT_POLICY_NAME
from edge_app.config import AppConfig
from edge_app.errors import ProvisionError

_IOT_HOST = re.compile(r"\.iot\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def region_of_host(host: str) -> str | None:
    """The AWS region in an IoT endpoint's name (``xxx-ats.iot.REGION.amazonaws.com``)."""
    match = _IOT_HOST.search(host)
    return match.group(1) if match else None


def region_of(config: AppConfig) -> str:
    """The AWS region of the config's IoT endpoint, else ``aws.region``."""
    return region_of_host(config.uplink.host) or config.aws.region


def registry_check(iot: IotCalls, facts: CertificateFacts, thing: str) -> CheckStep:
    """The ``registry`` step for the certificate ``facts`` and ``thing``, looked up with
    ``iot`` (in its region)."""
    cert_id, region = facts.certificate_id, iot.region
    try:
        found = iot.find("describe_certificate", certificateId=cert_id)
        if found is None:
            return CheckStep(
                "registry",
                "fail",
                f"certificate {cert_id} is not registered in AWS IoT in {region} (for the "
                "account of these credentials)",
                "provision the device (edge-app aws provision), or look in the account and "
                "region of uplink.host (--region)",
            )
        description = found["certificateDescription"]
        arn, status = str(description["certificateArn"]), str(description["status"])
        if status != "ACTIVE":
            return CheckStep(
                "registry",
                "fail",
                f"certificate {cert_id} is {status}",
                f"aws iot update-certificate --certificate-id {cert_id} --new-status ACTIVE",
            )
        things = iot.call("list_principal_things", principal=arn).get("things", [])
        if thing not in things:
            attached = ", ".join(things) or "none"
            return CheckStep(
                "registry",
                "fail",
                f"certificate {cert_id} is not attached to thing {thing} (attached: {attached})",
                f"aws iot attach-thing-principal --thing-name {thing} --principal {arn}",
            )
        policies = iot.call("list_attached_policies", target=arn).get("policies", [])
    except ProvisionError as exc:
        return CheckStep("registry", "skip", f"cannot look the certificate up: {exc}")
    names = [str(p["policyName"]) for p in policies]
    if not names:
        return CheckStep(
            "registry",
            "fail",
            f"no policy is attached to certificate {cert_id}",
            f"aws iot attach-policy --policy-name {DEFAULT_POLICY_NAME} --target {arn} "
            "(edge-app aws provision creates that policy)",
        )
    return CheckStep(
        "registry",
        "ok",
        f"certificate ACTIVE in {region}, attached to thing {thing}, policies: {', '.join(names)}",
    )
