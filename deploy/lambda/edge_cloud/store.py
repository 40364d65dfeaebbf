"""The function's side effects: DynamoDB, S3, SQS and CloudWatch, through boto3 clients.

Idempotence (a retried invocation, or IoT delivering a message twice, changes nothing):

* an event id is *claimed* by a conditional put in the ids table (``attribute_not_exists(id)
  OR batch_id = :this``): the first batch to carry an id owns it, the same batch retried owns
  it again, any other batch (the device's redelivery after a lost PUBACK) sees a duplicate;
* the S3 object of a batch has a key made of device, date and batch id, so writing it again
  writes the same bytes; review messages go to a FIFO queue deduplicated by event id;
* seq bookkeeping is a set union (``seqstate.apply``) under optimistic locking;
* a batch marker (``batch#<device>#<batch_id>``) written last short-cuts a complete retry.

Items in the ids table expire (DynamoDB TTL attribute ``expires``) after ``dedup_days``.
"""

from __future__ import annotations

__all__ = ["CLAIM_WORKERS", "SeqUpdate", "Services"]

import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from edge_cloud.batch import Batch
from edge_cloud.seqstate import Change, SeqState, apply

# Parallel conditional puts: one round trip each, so a 500-event batch is not 500 in a row.
CLAIM_WORKERS = 16
_SEQ_RETRIES = 20
_METRICS_PER_CALL = 500  # PutMetricData takes up to 1,000 datums per request
_EMF_METRICS = 100  # metrics per EMF document (CloudWatch's limit)


def _conditional_failed(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return bool(code == "ConditionalCheckFailedException")


@dataclass(frozen=True)
class SeqUpdate:
    change: Change
    dropped_total: int


@dataclass(frozen=True)
class Services:
    """boto3 clients and resource names (from the function's environment in production)."""

    s3: Any
    dynamodb: Any
    sqs: Any
    cloudwatch: Any
    bucket: str
    ids_table: str
    devices_table: str
    review_queue_url: str
    namespace: str
    dedup_days: float = 30.0
    metrics_sink: str = "emf"
    """``emf``: one CloudWatch Embedded Metric Format line per invocation on stdout (the
    function's log group; CloudWatch extracts the metrics, no API request); ``api``:
    ``PutMetricData`` (billed per request: ~45x the cost at one batch a second)."""

    # -- dedup -----------------------------------------------------------------------------

    def _expires(self) -> str:
        return str(int(time.time() + self.dedup_days * 86400))

    def batch_done(self, device: str, batch_id: str) -> bool:
        item = self.dynamodb.get_item(
            TableName=self.ids_table,
            Key={"id": {"S": f"batch#{device}#{batch_id}"}},
            ConsistentRead=True,
        ).get("Item")
        return item is not None

    def mark_done(self, device: str, batch_id: str, s3_key: str | None) -> None:
        item = {
            "id": {"S": f"batch#{device}#{batch_id}"},
            "expires": {"N": self._expires()},
            "device": {"S": device},
        }
        if s3_key is not None:
            item["s3_key"] = {"S": s3_key}
        self.dynamodb.put_item(TableName=self.ids_table, Item=item)

    def claim(
        self, batch: Batch, events: Sequence[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], int]:
        """(events this batch owns, number owned by another batch: duplicates)."""
        expires = self._expires()

        def one(event: dict[str, Any]) -> bool:
            try:
                self.dynamodb.put_item(
                    TableName=self.ids_table,
                    Item={
                        "id": {"S": event["id"]},
                        "batch_id": {"S": batch.batch_id},
                        "device": {"S": batch.device},
                        "seq": {"N": str(event["seq"])},
                        "expires": {"N": expires},
                    },
                    ConditionExpression="attribute_not_exists(id) OR batch_id = :b",
                    ExpressionAttributeValues={":b": {"S": batch.batch_id}},
                )
            except Exception as exc:
                if _conditional_failed(exc):
                    return False
                raise
            return True

        with ThreadPoolExecutor(max_workers=CLAIM_WORKERS) as pool:
            owned = list(pool.map(one, events))
        claimed = [e for e, ok in zip(events, owned, strict=True) if ok]
        return claimed, len(events) - len(claimed)

    # -- S3 --------------------------------------------------------------------------------

    def write_events(self, batch: Batch, events: Sequence[dict[str, Any]]) -> str:
        """One object per batch, JSON lines, partitioned by device and the first event's UTC
        date (for Athena: ``device=<thing>/date=<YYYY-MM-DD>``); returns its key."""
        date = str(events[0]["ts"])[:10]
        key = f"events/device={batch.device}/date={date}/{batch.batch_id}.jsonl"
        body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body.encode(),
            ContentType="application/x-ndjson",
        )
        return key

    def write_rejected(self, thing: str, reason: str, rule_event: Mapping[str, Any]) -> str:
        """Keep a rejected payload with its reason under ``rejected/`` (nothing is dropped
        unseen); the key is the payload's hash, so a retry writes the same object."""
        raw = json.dumps(dict(rule_event), sort_keys=True, default=str)
        digest = sha256(raw.encode()).hexdigest()[:32]
        date = datetime.now(UTC).strftime("%Y-%m-%d")
        key = f"rejected/device={thing}/date={date}/{digest}.json"
        record = {"reason": reason, "thing": thing, "rule_output": dict(rule_event)}
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(record, default=str).encode(),
            ContentType="application/json",
        )
        return key

    # -- SQS -------------------------------------------------------------------------------

    def queue_reviews(self, device: str, events: Sequence[dict[str, Any]], s3_key: str) -> int:
        """Send each ``review: true`` event to the FIFO human-review queue, deduplicated by
        event id (a retry within SQS's 5-minute window sends nothing twice)."""
        reviews = [e for e in events if e.get("review") is True]
        for start in range(0, len(reviews), 10):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"event": e, "s3_key": s3_key}),
                    "MessageGroupId": device,
                    "MessageDeduplicationId": e["id"],
                }
                for i, e in enumerate(reviews[start : start + 10])
            ]
            failed = self.sqs.send_message_batch(
                QueueUrl=self.review_queue_url, Entries=entries
            ).get("Failed")
            if failed:
                raise RuntimeError(f"review queue refused {len(failed)} message(s): {failed}")
        return len(reviews)

    # -- device state ----------------------------------------------------------------------

    def update_seq(self, device: str, seqs: Sequence[int], dropped: int) -> SeqUpdate:
        """Fold ``seqs`` into the device's seq state (optimistic locking on ``version``)."""
        for _ in range(_SEQ_RETRIES):
            item = self.dynamodb.get_item(
                TableName=self.devices_table, Key={"device": {"S": device}}, ConsistentRead=True
            ).get("Item", {})
            version = int(item.get("version", {}).get("N", "0"))
            before = SeqState(
                int(item.get("high", {}).get("N", "0")),
                tuple((int(a), int(b)) for a, b in json.loads(item.get("gaps", {}).get("S", "[]"))),
                int(item.get("untracked", {}).get("N", "0")),
            )
            change = apply(before, seqs)
            total = int(item.get("dropped", {}).get("N", "0")) + dropped
            try:
                self.dynamodb.update_item(
                    TableName=self.devices_table,
                    Key={"device": {"S": device}},
                    # every name through #aliases: several are DynamoDB reserved words
                    UpdateExpression="SET #h = :h, #g = :g, #u = :u, #m = :m, #d = :d, #v = :nv",
                    ConditionExpression="attribute_not_exists(#v) OR #v = :v",
                    ExpressionAttributeNames={
                        "#h": "high",
                        "#g": "gaps",
                        "#u": "untracked",
                        "#m": "missing",
                        "#d": "dropped",
                        "#v": "version",
                    },
                    ExpressionAttributeValues={
                        ":h": {"N": str(change.state.high)},
                        ":g": {"S": json.dumps([list(g) for g in change.state.gaps])},
                        ":u": {"N": str(change.state.untracked)},
                        ":m": {"N": str(change.state.missing)},
                        ":d": {"N": str(total)},
                        ":v": {"N": str(version)},
                        ":nv": {"N": str(version + 1)},
                    },
                )
            except Exception as exc:
                if _conditional_failed(exc):
                    continue  # another batch of this device got there first: read again
                raise
            return SeqUpdate(change, total)
        raise RuntimeError(f"seq state of {device} kept changing under {_SEQ_RETRIES} retries")

    def record_status(self, device: str, state: str, at_ms: int) -> bool:
        """Store ``state`` since ``at_ms`` unless a later status is already stored (IoT does
        not promise order); True if stored."""
        try:
            self.dynamodb.update_item(
                TableName=self.devices_table,
                Key={"device": {"S": device}},
                UpdateExpression="SET #s = :s, state_ms = :t",
                ConditionExpression="attribute_not_exists(state_ms) OR state_ms <= :t",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":s": {"S": state}, ":t": {"N": str(at_ms)}},
            )
        except Exception as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def devices(self) -> list[dict[str, Any]]:
        """Every device item (state and seq bookkeeping), for the sweep."""
        items: list[dict[str, Any]] = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.devices_table):
            items.extend(page.get("Items", []))
        return items

    # -- CloudWatch ------------------------------------------------------------------------

    def put_metrics(self, datums: Sequence[tuple[str, float, str | None]]) -> None:
        """``(name, value, device or None)`` as Count datums (device: the ``device``
        dimension; None: fleet-wide, no dimension), through ``metrics_sink``."""
        if self.metrics_sink == "emf":
            self._emf(datums)
            return
        data = [
            {
                "MetricName": name,
                "Value": float(value),
                "Unit": "Count",
                **({"Dimensions": [{"Name": "device", "Value": device}]} if device else {}),
            }
            for name, value, device in datums
        ]
        for start in range(0, len(data), _METRICS_PER_CALL):
            self.cloudwatch.put_metric_data(
                Namespace=self.namespace, MetricData=data[start : start + _METRICS_PER_CALL]
            )

    def _emf(self, datums: Sequence[tuple[str, float, str | None]]) -> None:
        by_device: dict[str | None, dict[str, float]] = {}
        for name, value, device in datums:
            by_device.setdefault(device, {})[name] = float(value)
        stamp = int(time.time() * 1000)
        for device, values in by_device.items():
            names = list(values)
            for start in range(0, len(names), _EMF_METRICS):
                chunk = names[start : start + _EMF_METRICS]
                doc: dict[str, Any] = {
                    "_aws": {
                        "Timestamp": stamp,
                        "CloudWatchMetrics": [
                            {
                                "Namespace": self.namespace,
                                "Dimensions": [["device"] if device else []],
                                "Metrics": [{"Name": n, "Unit": "Count"} for n in chunk],
                            }
                        ],
                    },
                    **({"device": device} if device else {}),
                    **{n: values[n] for n in chunk},
                }
                # print, not logging: the Lambda log handler would prefix the line, and
                # CloudWatch extracts metrics only from lines that are JSON objects.
                print(json.dumps(doc, separators=(",", ":")), flush=True)
