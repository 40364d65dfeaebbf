"""edge-app's cloud consumer: an AWS Lambda function behind the IoT rules of
``deploy/aws/edge-app.yaml``. Standalone: boto3 (in the Lambda runtime) and ``edge_cloud/``.

``handler(event, context)`` takes three kinds of input (``event["kind"]``):

* ``events`` (rule ``EventsRule``): one events batch. Decoded (compressed or not), checked
  against the event schema, de-duplicated by event ``id``, its seqs folded into the device's
  seq state (gaps reported with their ranges), the accepted events written to S3 (one object
  per batch, ``events/device=<thing>/date=<YYYY-MM-DD>/<batch_id>.jsonl``), ``review: true``
  events sent to the human-review queue, counts put to CloudWatch. A malformed batch or event
  is logged with the reason, counted and kept under ``rejected/``; it never raises, so it
  never loops through Lambda's retries.
* ``status`` (rule ``StatusRule``): the device's retained ``online``/``offline``/``stopped``
  status: stored, and ``DeviceConnected`` (1/0) put.
* ``sweep`` (every minute, EventBridge): per device ``DeviceConnected`` and ``SeqMissing``,
  and fleet-wide ``DevicesOffline`` (not online for longer than ``OFFLINE_AFTER_MINUTES``), so
  the alarms see a value every minute even when no device says anything.

Failures of AWS itself (throttling, an unreachable table) do raise: Lambda retries the
invocation, which is safe because every step is idempotent (``edge_cloud.store``), and after
the retries the input goes to the function's dead-letter queue.

Environment: ``BUCKET``, ``EVENT_IDS_TABLE``, ``DEVICES_TABLE``, ``REVIEW_QUEUE_URL``,
``METRICS_NAMESPACE`` (default ``EdgeApp/Cloud``), ``METRICS_SINK`` (``emf``: metrics as
Embedded Metric Format log lines, the default; ``api``: PutMetricData), ``DEDUP_DAYS`` (30),
``OFFLINE_AFTER_MINUTES`` (5); ``AWS_ENDPOINT_URL`` is honoured by boto3 itself (the tests
point it at moto).
"""

from __future__ import annotations

__all__ = ["handler", "process", "services_from_env"]

import json
import logging
import os
import time
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from edge_cloud.batch import Rejected, check_events, decode_batch
from edge_cloud.store import CLAIM_WORKERS, Services

log = logging.getLogger("edge_cloud")
log.setLevel(logging.INFO)

# Rules whose events are not anomalies (``AnomalyEvents`` counts the others' starts).
_NOT_ANOMALIES = frozenset({"health", "review", "outbox-recovered"})
_STATES = frozenset({"online", "offline", "stopped"})


def _log(level: int, message: str, **fields: Any) -> None:
    """One JSON line (CloudWatch Logs Insights reads the fields)."""
    log.log(level, json.dumps({"message": message, **fields}, default=str))


def services_from_env(env: dict[str, str] | None = None) -> Services:
    """The clients and names the function's environment configures."""
    env = dict(os.environ if env is None else env)
    return _services(
        bucket=env["BUCKET"],
        ids=env["EVENT_IDS_TABLE"],
        devices=env["DEVICES_TABLE"],
        queue=env["REVIEW_QUEUE_URL"],
        namespace=env.get("METRICS_NAMESPACE", "EdgeApp/Cloud"),
        dedup_days=float(env.get("DEDUP_DAYS", "30")),
        metrics_sink=env.get("METRICS_SINK", "emf"),
        endpoint=env.get("AWS_ENDPOINT_URL", ""),
    )


@lru_cache(maxsize=8)
def _services(
    *,
    bucket: str,
    ids: str,
    devices: str,
    queue: str,
    namespace: str,
    dedup_days: float,
    metrics_sink: str,
    endpoint: str,  # part of the cache key only: boto3 reads AWS_ENDPOINT_URL itself
) -> Services:
    # Built once per warm container (and per configuration, for the tests). One connection per
    # parallel id claim, so none waits for a pooled connection.
    pool = Config(max_pool_connections=CLAIM_WORKERS + 4)
    return Services(
        s3=boto3.client("s3"),
        dynamodb=boto3.client("dynamodb", config=pool),
        sqs=boto3.client("sqs"),
        cloudwatch=boto3.client("cloudwatch"),
        bucket=bucket,
        ids_table=ids,
        devices_table=devices,
        review_queue_url=queue,
        namespace=namespace,
        dedup_days=dedup_days,
        metrics_sink=metrics_sink,
    )


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point; returns a summary of what was done (for logs and tests)."""
    return process(event, services_from_env(), offline_after_s=_offline_after_s())


def _offline_after_s() -> float:
    return 60 * float(os.environ.get("OFFLINE_AFTER_MINUTES", "5"))


def process(
    event: dict[str, Any], svc: Services, *, offline_after_s: float = 300.0
) -> dict[str, Any]:
    """``handler`` with explicit services."""
    kind = event.get("kind")
    if kind == "events":
        return _events(event, svc)
    if kind == "status":
        return _status(event, svc)
    if kind == "sweep":
        return _sweep(svc, time.time(), offline_after_s)
    _log(logging.ERROR, "unknown input: check the IoT rule's SQL", kind=kind)
    return {"status": "ignored", "reason": f"unknown kind {kind!r}"}


def _events(event: dict[str, Any], svc: Services) -> dict[str, Any]:
    thing = str(event.get("thing"))
    batch = decode_batch(event)
    if isinstance(batch, Rejected):
        kept = svc.write_rejected(thing, batch.reason, event)
        _log(logging.WARNING, "batch rejected", thing=thing, reason=batch.reason, s3_key=kept)
        svc.put_metrics([("MalformedBatches", 1, thing)])
        return {"status": "rejected", "reason": batch.reason, "s3_key": kept}
    if svc.batch_done(batch.device, batch.batch_id):
        _log(logging.INFO, "batch already processed; nothing done", batch_id=batch.batch_id)
        return {"status": "already processed", "batch_id": batch.batch_id}
    good, bad = check_events(batch)
    for item, reason in bad:
        _log(logging.WARNING, "event rejected", thing=thing, reason=reason, event=item)
    if bad:
        svc.write_rejected(
            thing, f"{len(bad)} invalid event(s)", {"batch_id": batch.batch_id, "bad": bad}
        )
    claimed, duplicates = svc.claim(batch, good)
    key = svc.write_events(batch, claimed) if claimed else None
    reviews = svc.queue_reviews(batch.device, claimed, key) if key is not None else 0
    seq = svc.update_seq(batch.device, [e["seq"] for e in good], batch.dropped_total)
    if seq.change.opened:
        _log(
            logging.WARNING,
            "seq gap: events missing",
            device=batch.device,
            missing=[list(r) for r in seq.change.opened],
        )
    anomalies = sum(1 for e in claimed if e["rule"] not in _NOT_ANOMALIES and e["phase"] == "start")
    gap_seqs = sum(b - a + 1 for a, b in seq.change.opened)
    counts = {
        "EventsAccepted": len(claimed),
        "DuplicateEvents": duplicates,
        "MalformedEvents": len(bad),
        "ReviewQueued": reviews,
        "AnomalyEvents": anomalies,
        "SeqGaps": gap_seqs,
        "DeviceDropped": batch.dropped_total,
    }
    svc.put_metrics([(name, n, batch.device) for name, n in counts.items()])
    svc.mark_done(batch.device, batch.batch_id, key)
    return {
        "status": "accepted",
        "batch_id": batch.batch_id,
        "accepted": len(claimed),
        "duplicates": duplicates,
        "malformed": len(bad),
        "reviews": reviews,
        "gaps_opened": [list(r) for r in seq.change.opened],
        "gaps_filled": [list(r) for r in seq.change.filled],
        "missing": seq.change.state.missing,
        "s3_key": key,
    }


def _status(event: dict[str, Any], svc: Services) -> dict[str, Any]:
    thing, state = event.get("thing"), event.get("state")
    at_ms = event.get("received_ms")
    if not isinstance(thing, str) or state not in _STATES or not isinstance(at_ms, int):
        _log(logging.WARNING, "status rejected", event=event)
        return {"status": "rejected", "reason": "status needs thing, state and received_ms"}
    stored = svc.record_status(thing, str(state), at_ms)
    if stored:
        svc.put_metrics([("DeviceConnected", 1 if state == "online" else 0, thing)])
    return {"status": "stored" if stored else "older than the stored status", "state": state}


def _sweep(svc: Services, now: float, offline_after_s: float) -> dict[str, Any]:
    datums: list[tuple[str, float, str | None]] = []
    offline: list[str] = []
    items = svc.devices()
    for item in items:
        device = item["device"]["S"]
        if "state" in item:
            online = item["state"]["S"] == "online"
            datums.append(("DeviceConnected", 1 if online else 0, device))
            since_s = int(item["state_ms"]["N"]) / 1000
            if not online and now - since_s > offline_after_s:
                offline.append(device)
        datums.append(("SeqMissing", int(item.get("missing", {}).get("N", "0")), device))
    datums.append(("DevicesOffline", len(offline), None))
    svc.put_metrics(datums)
    if offline:
        _log(logging.WARNING, "devices offline", devices=offline, after_s=offline_after_s)
    return {"status": "swept", "devices": len(items), "offline": offline}
