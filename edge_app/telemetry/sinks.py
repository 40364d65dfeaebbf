"""Where minute aggregates go: the ``MetricsSink`` protocol, its implementations, EMF packing.

* ``metrics.sink: mqtt`` (the default) has no sink here: CloudWatch Embedded Metric Format
  documents (``pack_emf``) go out on ``edge-app/{thing}/metrics`` as the drain loop's metrics
  lane (``edge_app.telemetry.metricslane``), below events and snapshots, for an IoT rule to
  route to CloudWatch Logs, which extracts the metrics. No AWS credentials on the device.
* ``EmfFileSink``: the same documents appended to a file the CloudWatch agent tails.
* ``CloudWatchSink``: ``PutMetricData`` through boto3 (the ``[aws]`` extra), statistic sets,
  original timestamps, split to <= 1,000 datums and <= 1 MB per request.

``send`` either delivers every datum or raises ``TelemetryError``; the caller keeps the rows.
"""

from __future__ import annotations

__all__ = [
    "MAX_DATUMS_PER_REQUEST",
    "MAX_EMF_METRICS",
    "MAX_REQUEST_BYTES",
    "CloudWatchSink",
    "EmfFileSink",
    "MetricsSink",
    "emf_documents",
    "pack_emf",
    "plan_requests",
]

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from edge_app.errors import TelemetryError
from edge_app.telemetry.aggregate import MetricDatum

MAX_DATUMS_PER_REQUEST = 1000
"""CloudWatch PutMetricData: at most 1,000 metrics per request."""
MAX_REQUEST_BYTES = 1_000_000
"""Our budget per PutMetricData request body; CloudWatch's limit is 1 MB (1,048,576 bytes)."""
_REQUEST_OVERHEAD = 200  # Action, Version, Namespace of the query-protocol body
MAX_EMF_METRICS = 100
"""EMF specification: at most 100 metric definitions in one ``CloudWatchMetrics`` directive."""


class MetricsSink(Protocol):
    """Delivers minute aggregates; raises ``TelemetryError`` when it could not."""

    def send(self, datums: Sequence[MetricDatum]) -> None: ...


# -- CloudWatch PutMetricData --------------------------------------------------------------


def _cw_datum(d: MetricDatum) -> dict[str, Any]:
    return {
        "MetricName": d.name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in d.dims],
        "Timestamp": datetime.fromtimestamp(d.ts, UTC),
        "Unit": d.unit,
        "StatisticValues": {
            "SampleCount": float(d.count),
            "Sum": d.total,
            "Minimum": d.minimum,
            "Maximum": d.maximum,
        },
    }


def _encoded_size(index: int, d: MetricDatum) -> int:
    """Bytes this datum takes in a query-protocol body, the most verbose of the wire formats
    botocore may use for CloudWatch, so the estimate holds for all of them."""
    p = f"MetricData.member.{index}."
    fields = [(p + "MetricName", d.name), (p + "Unit", d.unit)]
    fields.append((p + "Timestamp", datetime.fromtimestamp(d.ts, UTC).isoformat()))
    for j, (k, v) in enumerate(d.dims, 1):
        fields += [(f"{p}Dimensions.member.{j}.Name", k), (f"{p}Dimensions.member.{j}.Value", v)]
    for stat, value in (
        ("SampleCount", d.count),
        ("Sum", d.total),
        ("Minimum", d.minimum),
        ("Maximum", d.maximum),
    ):
        fields.append((f"{p}StatisticValues.{stat}", repr(float(value))))
    return sum(len(k) + len(quote(v, safe="")) + 2 for k, v in fields)


def plan_requests(
    datums: Sequence[MetricDatum],
    *,
    max_datums: int = MAX_DATUMS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[MetricDatum]]:
    """Split ``datums`` (in order) into requests of <= ``max_datums`` and <= ``max_bytes``."""
    requests: list[list[MetricDatum]] = []
    current: list[MetricDatum] = []
    used = _REQUEST_OVERHEAD
    for d in datums:
        size = _encoded_size(len(current) + 1, d)
        if current and (len(current) >= max_datums or used + size > max_bytes):
            requests.append(current)
            current, used = [], _REQUEST_OVERHEAD
            size = _encoded_size(1, d)
        current.append(d)
        used += size
    if current:
        requests.append(current)
    return requests


class CloudWatchSink:
    """``PutMetricData`` into ``namespace`` with a boto3 CloudWatch ``client`` (caller-owned).

    Build the client with :func:`edge_app.telemetry.aws.cloudwatch_client` (standard credential
    chain, or the AWS IoT credentials provider).
    """

    def __init__(self, client: Any, namespace: str) -> None:
        if not namespace or namespace.startswith("AWS/"):
            raise TelemetryError(
                f"CloudWatch namespace {namespace!r} is invalid: use a non-empty name that does "
                "not start with 'AWS/' (for example 'EdgeApp')"
            )
        self._client = client
        self._namespace = namespace
        self.requests = 0

    def send(self, datums: Sequence[MetricDatum]) -> None:
        from botocore.exceptions import (  # noqa: PLC0415  (optional [aws] extra)
            BotoCoreError,
            ClientError,
        )

        for request in plan_requests(datums):
            try:
                self._client.put_metric_data(
                    Namespace=self._namespace, MetricData=[_cw_datum(d) for d in request]
                )
            except (BotoCoreError, ClientError) as exc:
                raise TelemetryError(
                    f"CloudWatch PutMetricData failed: {exc}; the aggregates stay queued and "
                    "are retried (check network, credentials and the IAM policy)"
                ) from exc
            self.requests += 1


# -- Embedded Metric Format ----------------------------------------------------------------


def emf_documents(datums: Sequence[MetricDatum], namespace: str) -> list[dict[str, Any]]:
    """EMF documents, one per (timestamp, dimension set). EMF has no statistic sets: the metric
    value is the period's sum for counters and the mean otherwise; the full set rides along
    as the property ``{Name}Stats`` for Logs Insights."""
    groups: dict[tuple[float, tuple[tuple[str, str], ...]], list[MetricDatum]] = {}
    for d in datums:
        groups.setdefault((d.ts, d.dims), []).append(d)
    docs = []
    for (ts, dims), members in groups.items():
        doc: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(ts * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [[k for k, _ in dims]],
                        "Metrics": [{"Name": d.name, "Unit": d.unit} for d in members],
                    }
                ],
            },
            **dict(dims),
        }
        for d in members:
            doc[d.name] = d.total if d.kind == "counter" else d.mean
            doc[f"{d.name}Stats"] = {
                "Count": d.count,
                "Sum": d.total,
                "Min": d.minimum,
                "Max": d.maximum,
            }
        docs.append(doc)
    return docs


def _compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def pack_emf(
    datums: Sequence[MetricDatum],
    namespace: str,
    *,
    max_bytes: int,
    max_metrics: int = MAX_EMF_METRICS,
) -> list[tuple[bytes, list[int]]]:
    """``datums`` as compact EMF documents of at most ``max_bytes`` bytes and ``max_metrics``
    metrics each, in the order of their oldest datum; each with the indices into ``datums``
    it carries. A lone datum whose document is still larger comes out alone and oversized:
    the caller decides (it can never fit)."""
    groups: dict[tuple[float, tuple[tuple[str, str], ...]], list[int]] = {}
    for i, d in enumerate(datums):
        groups.setdefault((d.ts, d.dims), []).append(i)
    out: list[tuple[bytes, list[int]]] = []

    def add(indices: list[int]) -> None:
        (doc,) = emf_documents([datums[i] for i in indices], namespace)
        payload = _compact(doc)
        if len(payload) > max_bytes and len(indices) > 1:
            half = len(indices) // 2
            add(indices[:half])
            add(indices[half:])
            return
        out.append((payload, indices))

    for members in groups.values():
        for start in range(0, len(members), max_metrics):
            add(members[start : start + max_metrics])
    return out


class EmfFileSink:
    """Appends EMF documents as JSON lines to ``path`` (fsync'd), for the CloudWatch agent."""

    def __init__(self, path: Path, namespace: str) -> None:
        self._path = path
        self._namespace = namespace

    def send(self, datums: Sequence[MetricDatum]) -> None:
        lines = b"".join(_compact(d) + b"\n" for d in emf_documents(datums, self._namespace))
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("ab") as out:
                out.write(lines)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise TelemetryError(
                f"cannot append metrics to {self._path}: {exc}; check the path and free space"
            ) from exc
