"""/metrics text parses with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from edge_app.telemetry import Registry, render


def test_exposition_parses_with_labels_and_summaries() -> None:
    reg = Registry({"device": "cam-1"})
    reg.counter("Events", rule="intrusion", severity="high").inc(3)
    reg.gauge("OutboxBytes", "Bytes").set(2048)
    reg.gauge("DeviceTemperature", zone='cpu "x"\\').set(51.5)
    reg.histogram("InferenceTime", camera="dock").observe_many([10.0, 20.0, 30.0])
    families = {f.name: f for f in text_string_to_metric_families(render(reg))}
    events = families["edge_app_events"]
    assert events.type == "counter"
    assert events.samples[0].value == 3
    assert events.samples[0].labels == {"device": "cam-1", "rule": "intrusion", "severity": "high"}
    assert families["edge_app_outbox_bytes"].samples[0].value == 2048
    temp = families["edge_app_device_temperature"].samples[0]
    assert temp.labels["zone"] == 'cpu "x"\\'
    summary = families["edge_app_inference_time_ms"]
    assert summary.type == "summary"
    values = {(s.name, s.labels.get("quantile")): s.value for s in summary.samples}
    assert values[("edge_app_inference_time_ms", "0.5")] == 20.0
    assert values[("edge_app_inference_time_ms_count", None)] == 3
