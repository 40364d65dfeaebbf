"""Metrics registry, minute aggregates, CloudWatch/EMF sinks, Prometheus text, health HTTP
endpoint and systemd notify/watchdog."""

from edge_app.telemetry.aggregate import MetricDatum, MinuteAggregator
from edge_app.telemetry.aws import IotCredentialsSource, aws_client, iot_credentials
from edge_app.telemetry.collector import CameraCounters, Collector, DiskUsage
from edge_app.telemetry.health import Condition, HealthMonitor, HealthReport, HealthThresholds
from edge_app.telemetry.healthevents import HEALTH_RULE, HEALTH_SEVERITY, HealthEvents
from edge_app.telemetry.http import HealthServer
from edge_app.telemetry.logship import (
    CloudWatchLogsSink,
    LogBuffer,
    LogShipper,
    plan_log_batches,
)
from edge_app.telemetry.metricslane import MetricsLaneSender
from edge_app.telemetry.prometheus import render
from edge_app.telemetry.registry import Counter, Gauge, Histogram, MetricKey, Registry
from edge_app.telemetry.shipper import MAX_AGE_S, TelemetryLoop
from edge_app.telemetry.sinks import (
    CloudWatchSink,
    EmfFileSink,
    MetricsSink,
    emf_documents,
    pack_emf,
    plan_requests,
)
from edge_app.telemetry.systemd import (
    TimeoutExtender,
    Watchdog,
    sd_notify,
    watchdog_interval_s,
)
from edge_app.telemetry.token import BearerToken, load_token

__all__ = [
    "HEALTH_RULE",
    "HEALTH_SEVERITY",
    "MAX_AGE_S",
    "BearerToken",
    "CameraCounters",
    "CloudWatchLogsSink",
    "CloudWatchSink",
    "Collector",
    "Condition",
    "Counter",
    "DiskUsage",
    "EmfFileSink",
    "Gauge",
    "HealthEvents",
    "HealthMonitor",
    "HealthReport",
    "HealthServer",
    "HealthThresholds",
    "Histogram",
    "IotCredentialsSource",
    "LogBuffer",
    "LogShipper",
    "MetricDatum",
    "MetricKey",
    "MetricsLaneSender",
    "MetricsSink",
    "MinuteAggregator",
    "Registry",
    "TelemetryLoop",
    "TimeoutExtender",
    "Watchdog",
    "aws_client",
    "emf_documents",
    "iot_credentials",
    "load_token",
    "pack_emf",
    "plan_log_batches",
    "plan_requests",
    "render",
    "sd_notify",
    "watchdog_interval_s",
]
