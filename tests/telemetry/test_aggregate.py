"""Registry -> minute statistic sets: counters as increments, gauges as samples, histograms."""

from __future__ import annotations

import math

import pytest

from edge_app.telemetry import MetricDatum, MetricKey, MinuteAggregator, Registry

T0 = 1_790_000_140.0  # 40 s into the minute that starts at ..._100


def test_minute_sets_from_counters_gauges_and_histograms() -> None:
    reg = Registry({"device": "d1"})
    agg = MinuteAggregator(reg)
    frames = reg.counter("FramesProcessed", camera="c1")
    depth = reg.gauge("OutboxDepth", "Count")
    hist = reg.histogram("InferenceTime", camera="c1")
    frames.set_total(10)
    depth.set(3)
    hist.observe_many([5.0, 7.0])
    assert agg.sample(T0) == []
    frames.set_total(25)
    depth.set(5)
    hist.observe(9.0)
    assert agg.sample(T0 + 10) == []
    closed = {d.name: d for d in agg.sample(T0 + 25)}  # next minute: the first one closes
    minute = math.floor(T0 / 60) * 60
    assert {d.ts for d in closed.values()} == {minute}
    assert closed["FramesProcessed"].total == 25  # increments 10 + 15
    assert closed["FramesProcessed"].kind == "counter"
    assert closed["FramesProcessed"].dims == (("camera", "c1"), ("device", "d1"))
    assert (closed["OutboxDepth"].count, closed["OutboxDepth"].minimum) == (2, 3)
    assert closed["OutboxDepth"].maximum == 5
    inference = closed["InferenceTime"]
    assert (inference.count, inference.total, inference.maximum) == (3, 21.0, 9.0)


def test_unknown_gauges_are_not_sent_and_json_round_trips() -> None:
    reg = Registry()
    reg.gauge("DeviceTemperature")  # never set: nan
    reg.gauge("ProcessRss", "Bytes").set(1024)
    agg = MinuteAggregator(reg, period_s=60)
    agg.sample(T0)
    data = agg.close()
    assert [d.name for d in data] == ["ProcessRss"]
    assert MetricDatum.from_json(data[0].to_json()) == data[0]


def test_bad_names_and_kinds_are_refused() -> None:
    reg = Registry()
    reg.counter("Events")
    with pytest.raises(TypeError, match="not a gauge"):
        reg.gauge("Events")
    with pytest.raises(ValueError, match="CamelCase"):
        MetricKey("bad name")
    with pytest.raises(ValueError, match="only grows"):
        reg.counter("Events").inc(-1)


def test_histogram_quantiles_use_the_recent_window() -> None:
    hist = Registry().histogram("InferenceTime")
    assert math.isnan(hist.quantile(0.5))
    hist.observe_many(float(v) for v in range(1, 101))
    assert hist.quantile(0.5) == 50.0
    assert hist.quantile(0.95) == 95.0
