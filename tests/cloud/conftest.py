"""The Lambda's AWS resources in moto (server mode), made fresh for each test, and the
function's environment pointing at them (``handler`` reads it, boto3 honours
``AWS_ENDPOINT_URL``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from handler import services_from_env
from tests.telemetry.aws import moto_client


@dataclass(frozen=True)
class Cloud:
    """The resources of one test and real boto3 clients on them."""

    env: dict[str, str]
    s3: Any
    dynamodb: Any
    sqs: Any
    cloudwatch: Any

    @property
    def bucket(self) -> str:
        return self.env["BUCKET"]

    def objects(self, prefix: str = "events/") -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {
            o["Key"]: self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
            for o in listing
        }

    def reviews(self) -> list[str]:
        got = self.sqs.receive_message(
            QueueUrl=self.env["REVIEW_QUEUE_URL"], MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        return [m["Body"] for m in got.get("Messages", [])]

    def queued(self) -> int:
        """Messages in the review queue (visible or being handled)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.env["REVIEW_QUEUE_URL"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def device(self, thing: str) -> dict[str, Any]:
        key = {"device": {"S": thing}}
        item: dict[str, Any] = self.dynamodb.get_item(
            TableName=self.env["DEVICES_TABLE"], Key=key, ConsistentRead=True
        ).get("Item", {})
        return item

    def metric_sum(self, name: str, device: str | None) -> float:
        """Sum of every datum of ``name`` (with the ``device`` dimension, or none) in moto."""
        dims = [{"Name": "device", "Value": device}] if device else []
        total = 0.0
        for metric in self.cloudwatch.list_metrics(
            Namespace=self.env["METRICS_NAMESPACE"], MetricName=name
        )["Metrics"]:
            if metric["Dimensions"] != dims:
                continue
            stats = self.cloudwatch.get_metric_statistics(
                Namespace=self.env["METRICS_NAMESPACE"],
                MetricName=name,
                Dimensions=dims,
                StartTime="2000-01-01T00:00:00Z",
                EndTime="2100-01-01T00:00:00Z",
                Period=86400 * 365,
                Statistics=["Sum"],
            )
            total += sum(p["Sum"] for p in stats["Datapoints"])
        return total


@pytest.fixture
def cloud(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Cloud:
    tag = uuid.uuid4().hex[:10]
    s3 = moto_client("s3", moto_endpoint)
    dynamodb = moto_client("dynamodb", moto_endpoint)
    sqs = moto_client("sqs", moto_endpoint)
    bucket = f"edge-app-events-{tag}"
    s3.create_bucket(Bucket=bucket)
    for table, key in ((f"ids-{tag}", "id"), (f"devices-{tag}", "device")):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    queue = sqs.create_queue(QueueName=f"review-{tag}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    env = {
        "BUCKET": bucket,
        "EVENT_IDS_TABLE": f"ids-{tag}",
        "DEVICES_TABLE": f"devices-{tag}",
        "REVIEW_QUEUE_URL": queue,
        "METRICS_NAMESPACE": f"EdgeApp/Cloud-{tag}",
        "METRICS_SINK": "api",  # moto keeps what PutMetricData sends; EMF: test_emf_metrics
        "OFFLINE_AFTER_MINUTES": "5",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the function's environment, as Lambda sets it
    services_from_env()  # fail here, not in the test, if the environment is incomplete
    return Cloud(env, s3, dynamodb, sqs, moto_client("cloudwatch", moto_endpoint))
