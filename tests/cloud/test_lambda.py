"""The Lambda consumer (deploy/lambda/handler.py) called as Lambda calls it, with real boto3
clients on moto in server mode: S3, DynamoDB, SQS, CloudWatch."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from edge_app.clock import FakeClock
from edge_app.domain import Event
from edge_app.ids import new_ulid
from edge_app.uplink import CODEC_NAMES, codec, encode_batch
from edge_cloud.batch import MAX_DECODED_BYTES, inflate
from handler import handler, process, services_from_env
from tests.cloud.conftest import Cloud
from tests.factories import DEVICE, make_event

CLOCK = FakeClock(wall=1_790_000_000.0)


def events(seqs: range | list[int], **kwargs: Any) -> list[Event]:
    return [make_event(CLOCK, **kwargs).with_seq(seq) for seq in seqs]


def rule_input(
    batch: list[Event],
    *,
    compression: str = "gzip",
    thing: str = DEVICE,
    dropped: dict[str, dict[str, int]] | None = None,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """What EventsRule's SQL hands the function for this batch, published as the device
    publishes it (``encode_batch``, then the configured codec)."""
    bodies = [json.dumps(e.to_json(), separators=(",", ":")) for e in batch]
    seqs = [e.seq for e in batch if e.seq is not None]
    payload = encode_batch(
        DEVICE,
        batch_id or new_ulid(CLOCK.time()),
        bodies,
        dropped or {},
        first_seq=min(seqs, default=None),
        last_seq=max(seqs, default=None),
    )
    c = codec(compression)
    return raw_input(c.compress(payload), c.content_type, thing=thing)


def json_batch_id(rule: dict[str, Any]) -> str:
    wire = base64.b64decode(rule["payload"])
    return str(json.loads(inflate(wire, rule["content_type"]))["batch_id"])


def raw_input(wire: bytes, content_type: str | None, *, thing: str = DEVICE) -> dict[str, Any]:
    return {
        "kind": "events",
        "payload": base64.b64encode(wire).decode(),
        "thing": thing,
        "content_type": content_type,
        "received_ms": int(time.time() * 1000),
    }


def test_a_compressed_batch_lands_in_s3_partitioned_by_device_and_date(cloud: Cloud) -> None:
    result = handler(rule_input(events(range(1, 51))), None)
    assert (result["status"], result["accepted"], result["duplicates"]) == ("accepted", 50, 0)
    objects = cloud.objects()
    date = time.strftime("%Y-%m-%d", time.gmtime(CLOCK.time()))
    (key,) = objects
    assert key.startswith(f"events/device={DEVICE}/date={date}/")
    assert key == result["s3_key"]
    stored = [json.loads(line) for line in objects[key].splitlines()]
    assert [e["seq"] for e in stored] == list(range(1, 51))
    assert cloud.metric_sum("EventsAccepted", DEVICE) == 50
    assert cloud.metric_sum("AnomalyEvents", DEVICE) == 50  # intrusion starts
    device = cloud.device(DEVICE)
    assert (device["high"]["N"], device["missing"]["N"]) == ("50", "0")


def test_redelivered_events_are_dropped_as_duplicates(cloud: Cloud) -> None:
    first = events(range(1, 31))
    handler(rule_input(first), None)
    # After a lost PUBACK the device leases the same events again, under a new batch id.
    again = handler(rule_input(first[10:] + events(range(31, 36))), None)
    assert (again["accepted"], again["duplicates"]) == (5, 20)
    stored = [json.loads(line) for body in cloud.objects().values() for line in body.splitlines()]
    assert sorted(e["seq"] for e in stored) == list(range(1, 36))  # each event once
    assert cloud.metric_sum("DuplicateEvents", DEVICE) == 20


def test_a_retried_invocation_changes_nothing(cloud: Cloud) -> None:
    batch = [replace(e, review=i % 2 == 0) for i, e in enumerate(events(range(1, 21)))]
    rule = rule_input(batch)
    assert handler(rule, None)["reviews"] == 10

    def state() -> tuple[object, ...]:
        return (
            cloud.objects(),
            cloud.device(DEVICE),
            cloud.metric_sum("EventsAccepted", DEVICE),
            cloud.queued(),
        )

    before = state()
    again = handler(rule, None)  # Lambda retries, or IoT delivers the message twice
    assert again["status"] == "already processed"
    assert state() == before
    assert before[3] == 10
    body = json.loads(cloud.reviews()[0])
    assert body["event"]["review"] is True
    assert body["s3_key"] in cloud.objects()


def test_review_events_are_queued_once_even_when_a_crash_repeats_them(cloud: Cloud) -> None:
    """Two attempts of one batch that both get as far as the queue (the marker was never
    written): the FIFO queue's deduplication by event id keeps one message per event."""
    batch = [replace(e, review=True) for e in events(range(1, 6))]
    rule = rule_input(batch)
    handler(rule, None)
    cloud.dynamodb.delete_item(  # as if the first attempt died before its last step
        TableName=cloud.env["EVENT_IDS_TABLE"],
        Key={"id": {"S": f"batch#{DEVICE}#{json_batch_id(rule)}"}},
    )
    assert handler(rule, None)["reviews"] == 5
    assert cloud.queued() == 5


def test_a_retry_after_a_failed_invocation_delivers_instead_of_dropping(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt claims the ids, then S3 fails; the retry (same batch) owns the
    same ids again and stores them: a failure never turns events into "duplicates"."""
    missing_bucket = f"{cloud.bucket}-later"
    monkeypatch.setenv("BUCKET", missing_bucket)
    rule = rule_input(events(range(1, 11)))
    with pytest.raises(Exception, match="NoSuchBucket"):
        handler(rule, None)
    cloud.s3.create_bucket(Bucket=missing_bucket)
    result = handler(rule, None)
    assert (result["accepted"], result["duplicates"]) == (10, 0)


def test_gaps_are_reported_with_ranges_and_out_of_order_batches_fill_them(
    cloud: Cloud,
) -> None:
    assert handler(rule_input(events(range(1, 11))), None)["gaps_opened"] == []
    late = handler(rule_input(events(range(21, 31))), None)
    assert late["gaps_opened"] == [[11, 20]]
    assert late["missing"] == 10
    assert cloud.metric_sum("SeqGaps", DEVICE) == 10
    filled = handler(rule_input(events(range(11, 21))), None)  # the refused batch, retried
    assert (filled["accepted"], filled["gaps_filled"], filled["missing"]) == (10, [[11, 20]], 0)
    assert json.loads(cloud.device(DEVICE)["gaps"]["S"]) == []


class InterleavedDynamoDB:
    """The real DynamoDB client (moto), but another invocation's whole batch runs just before
    the first write of this one's seq state: the race of two batches of one device, made
    deterministic (moto itself does not make conditional writes atomic across threads)."""

    def __init__(self, inner: Any, table: str, other: Callable[[], object]) -> None:
        self._inner, self._table = inner, table
        self._other: Callable[[], object] | None = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def update_item(self, **kwargs: Any) -> Any:
        other, self._other = self._other, None
        if other is not None and kwargs["TableName"] == self._table:
            other()
        return self._inner.update_item(**kwargs)


def test_two_batches_racing_on_one_device_keep_the_seq_state_exact(cloud: Cloud) -> None:
    plain = services_from_env()
    first, second = rule_input(events(range(1, 21))), rule_input(events(range(21, 41)))
    raced: list[dict[str, Any]] = []
    racing = replace(
        plain,
        dynamodb=InterleavedDynamoDB(
            plain.dynamodb, cloud.env["DEVICES_TABLE"], lambda: raced.append(process(second, plain))
        ),
    )
    result = process(first, racing)
    assert (result["accepted"], raced[0]["accepted"]) == (20, 20)
    device = cloud.device(DEVICE)
    # the first batch's write found the version changed, read again and merged
    assert (device["high"]["N"], device["missing"]["N"], device["version"]["N"]) == (
        "40", "0", "2",
    )  # fmt: skip
    assert raced[0]["gaps_opened"] == [[1, 20]]  # seen before the first batch landed
    assert result["gaps_filled"] == [[1, 20]]


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (raw_input(b"not json", "application/json"), "not an events batch"),
        (raw_input(b'{"schema": "x"}', "application/json+gzip"), "does not decompress"),
        (raw_input(gzip.compress(b" " * (9 << 20)), "application/json+gzip"), "inflates"),
        (raw_input(b"{}", "text/csv"), "unknown content type"),
        (raw_input(gzip.compress(b"[1, 2]"), "application/json+gzip"), "not an object"),
        (raw_input(b'{"schema": "edge-app/events/2"}', None), "schema is"),
        ({**raw_input(b"{}", None), "payload": "%%%"}, "not base64"),
        ({**raw_input(b"{}", None), "thing": "a/b"}, "not a valid thing name"),
    ],
)
@pytest.mark.slow
def test_malformed_batches_are_rejected_with_a_reason_and_kept(
    cloud: Cloud, rule: dict[str, Any], reason: str
) -> None:
    result = handler(rule, None)
    assert result["status"] == "rejected"
    assert reason in result["reason"]
    kept = cloud.objects("rejected/")
    assert list(kept) == [result["s3_key"]]
    assert json.loads(kept[result["s3_key"]])["reason"] == result["reason"]
    assert cloud.objects() == {}
    thing = rule["thing"] if rule["thing"] == DEVICE else None
    if thing:
        assert cloud.metric_sum("MalformedBatches", thing) == 1


def test_a_batch_naming_another_device_is_refused(cloud: Cloud) -> None:
    """cam-002 publishing on its own topic a batch that claims to be cam-001's."""
    result = handler(rule_input(events(range(1, 4)), thing="cam-002"), None)
    assert result["status"] == "rejected"
    assert "says device 'cam-001' but was published by thing 'cam-002'" in result["reason"]
    assert cloud.device(DEVICE) == {}
    assert cloud.objects() == {}


def test_one_bad_event_never_fails_the_others(cloud: Cloud) -> None:
    good = events(range(1, 6))
    bad = events([6], extra={"score": "high"})
    result = handler(rule_input(good + bad), None)
    assert (result["accepted"], result["malformed"]) == (5, 1)
    (kept,) = cloud.objects("rejected/").values()
    assert "score must be a number 0..1" in kept.decode()
    assert cloud.metric_sum("MalformedEvents", DEVICE) == 1


def test_drop_reports_are_counted(cloud: Cloud) -> None:
    result = handler(rule_input([], dropped={"intrusion": {"low": 3}}), None)
    assert result["accepted"] == 0
    assert cloud.device(DEVICE)["dropped"]["N"] == "3"
    assert cloud.metric_sum("DeviceDropped", DEVICE) == 3


def test_status_and_sweep_report_a_device_offline_too_long(cloud: Cloud) -> None:
    now_ms = int(time.time() * 1000)
    status = {"kind": "status", "thing": DEVICE, "state": "offline", "received_ms": now_ms}
    assert handler({**status, "received_ms": now_ms - 600_000}, None)["status"] == "stored"
    assert handler({**status, "thing": "cam-002", "state": "online"}, None)["status"] == "stored"
    swept = handler({"kind": "sweep"}, None)
    assert (swept["devices"], swept["offline"]) == (2, [DEVICE])
    assert cloud.metric_sum("DevicesOffline", None) == 1
    # An older status arriving late does not overwrite a newer one.
    handler({**status, "state": "online", "received_ms": now_ms - 500_000}, None)
    stale = handler({**status, "received_ms": now_ms - 700_000}, None)
    assert stale["status"] == "older than the stored status"
    assert cloud.device(DEVICE)["state"]["S"] == "online"
    assert handler({"kind": "sweep"}, None)["offline"] == []


def test_unknown_input_is_ignored_not_retried(cloud: Cloud) -> None:
    assert handler({"kind": "bogus"}, None)["status"] == "ignored"


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_the_lambda_decodes_every_codec_the_device_has(name: str) -> None:
    """The function keeps its own decoder (it is deployed without edge_app): same result."""
    data = encode_batch(DEVICE, new_ulid(0), ['{"a":1}'] * 300, {}, first_seq=1, last_seq=300)
    c = codec(name)
    assert inflate(c.compress(data), c.content_type) == data
    if name != "none":  # plain JSON is at most IoT Core's 128 KB: nothing to inflate
        with pytest.raises(ValueError, match="inflates to more than"):
            inflate(c.compress(b" " * (MAX_DECODED_BYTES + 1)), c.content_type)


def test_emf_metrics_are_one_json_line_per_dimension_set(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default sink: Embedded Metric Format on stdout, which CloudWatch Logs turns into
    the same metrics without a PutMetricData request."""
    monkeypatch.setenv("METRICS_SINK", "emf")
    handler(rule_input(events(range(1, 8))), None)
    handler({"kind": "sweep"}, None)
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    batch, per_device, fleet = docs
    (directive,) = batch["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == cloud.env["METRICS_NAMESPACE"]
    assert directive["Dimensions"] == [["device"]]
    assert (batch["device"], batch["EventsAccepted"], batch["SeqGaps"]) == (DEVICE, 7, 0)
    assert {m["Name"] for m in directive["Metrics"]} <= set(batch)
    assert per_device["SeqMissing"] == 0
    assert fleet["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    assert (fleet["DevicesOffline"], "device" in fleet) == (0, False)
    assert cloud.metric_sum("EventsAccepted", DEVICE) == 0  # no API request was made
