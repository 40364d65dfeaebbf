"""Calls to the AWS IoT control plane through a boto3 client, errors in our own words.

``IotCalls`` wraps any boto3 ``iot`` client (one from ``iot_client``, or one a test points at
moto): ``call`` returns the response or raises ``ProvisionError`` naming the IAM action that was
refused and what to do; ``find`` returns None where AWS answers "not found". Nothing here
retries on its own beyond botocore's standard mode; provisioning is idempotent, so the advice
for a passing fault is to run the command again.
"""

from __future__ import annotations

__all__ = ["IotCalls", "aws_client", "iot_client"]

import re
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from edge_app.errors import ProvisionError

_NOT_FOUND = {"ResourceNotFoundException", "NotFoundException"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedException"}
_THROTTLED = {"ThrottlingException", "LimitExceededException", "ServiceUnavailableException"}
_IAM_DOC = "docs/aws-device.md, 'Who runs provision'"


def iot_client(
    region: str | None, *, profile: str | None = None, endpoint_url: str | None = None
) -> Any:
    """A boto3 ``iot`` client (the control plane); see ``aws_client``."""
    return aws_client("iot", region, profile=profile, endpoint_url=endpoint_url)


def aws_client(
    service: str,
    region: str | None,
    *,
    profile: str | None = None,
    endpoint_url: str | None = None,
) -> Any:
    """A boto3 ``service`` client: credentials from boto3's standard chain (or ``profile``),
    ``region`` (None: the profile's or ``AWS_REGION``), ``endpoint_url`` for a VPC endpoint, a
    data endpoint or a test server; standard retries. Raises ``ProvisionError`` for an unknown
    profile or no region."""
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        return session.client(
            service,
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10),
        )
    except ProfileNotFound as exc:
        raise ProvisionError(f"{exc}: see `aws configure list-profiles`") from exc
    except NoRegionError as exc:
        raise ProvisionError(
            "no AWS region: pass --region (e.g. --region eu-west-1) or set AWS_REGION"
        ) from exc


class IotCalls:
    """``client``'s operations, with errors as ``ProvisionError``. The caller owns ``client``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def region(self) -> str:
        """The client's region."""
        region: str = self.client.meta.region_name
        return region

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """``client.<operation>(**params)``; ``ProvisionError`` for every failure."""
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**params)
        except ClientError as exc:
            raise self._refused(operation, exc) from exc
        except NoCredentialsError as exc:
            raise ProvisionError(
                "no AWS credentials found: run `aws configure`, set AWS_PROFILE or pass --profile "
                f"(the permissions needed are listed in {_IAM_DOC})"
            ) from exc
        except EndpointConnectionError as exc:
            raise ProvisionError(
                f"cannot reach AWS IoT in {self.region} ({exc}): check the network and --region; "
                "re-running is safe"
            ) from exc
        except BotoCoreError as exc:
            raise ProvisionError(f"AWS IoT {_action(operation)} failed: {exc}") from exc
        return response

    def find(self, operation: str, **params: Any) -> dict[str, Any] | None:
        """Like ``call``, but None when AWS answers that the resource does not exist."""
        try:
            return self.call(operation, **params)
        except ProvisionError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _code(cause) in _NOT_FOUND:
                return None
            raise

    def _refused(self, operation: str, exc: ClientError) -> ProvisionError:
        code = _code(exc)
        message = str(exc.response.get("Error", {}).get("Message", "")).strip()
        action = _action(operation)
        if code in _DENIED:
            advice = (
                f"these AWS credentials may not call {action}: grant the permissions listed in "
                f"{_IAM_DOC}"
            )
        elif code in _THROTTLED:
            advice = "AWS is throttling requests: wait a minute and run the command again"
        else:
            advice = "see the message above; re-running the command is safe"
        return ProvisionError(f"AWS IoT refused {action}: {code}: {message or '-'}; {advice}")


def _action(operation: str) -> str:
    """The IAM action of a boto3 operation name: ``create_thing`` -> ``iot:CreateThing``."""
    return "iot:" + re.sub(r"(?:^|_)([a-z])", lambda m: m.group(1).upper(), operation)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))
