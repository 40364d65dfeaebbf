"""Fixtures of the AWS onboarding tests: a real boto3 ``iot`` client against moto's server."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from edge_app.aws import IotCalls
from simulator.certs import Pki
from tests.aws.signing import CsrSigningClient
from tests.telemetry.aws import moto_client

_names = itertools.count(1)


@pytest.fixture
def thing_name(request: pytest.FixtureRequest) -> str:
    """A thing name no other test of the session uses (moto's state lives for the session)."""
    return re.sub(r"[^A-Za-z0-9_:-]", "-", f"cam-{next(_names):03d}-{request.node.name[:40]}")


@pytest.fixture
def iot_raw(moto_endpoint: str) -> Any:
    """A plain boto3 ``iot`` client talking to moto (its own CSR signing: a random key)."""
    return moto_client("iot", moto_endpoint)


@pytest.fixture
def iot(iot_raw: Any, pki: Pki) -> IotCalls:
    """``IotCalls`` over moto whose CSR signing signs the CSR's key with the test CA."""
    return IotCalls(CsrSigningClient(iot_raw, pki.ca, pki.ca.parent / "ca.key"))
