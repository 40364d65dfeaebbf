"""Real boto3 clients for moto in server mode."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# A failing request must fail fast: no retries, short timeouts (the loops retry next tick).
FAST = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30)


def moto_client(service: str, endpoint: str) -> Any:
    """A boto3 ``service`` client talking HTTP to ``endpoint`` with moto's dummy credentials."""
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=FAST,
    )
