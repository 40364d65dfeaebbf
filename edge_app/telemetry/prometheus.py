"""The registry in Prometheus text exposition format (version 0.0.4), for ``/metrics``.

Names: ``edge_app_`` + snake_case of the metric name + a unit suffix (``_total`` for
counters); dimensions become labels. Histograms are exposed as summaries (p50, p95 of the
recent window, lifetime ``_sum`` and ``_count``).
"""

from __future__ import annotations

__all__ = ["CONTENT_TYPE", "prometheus_name", "render"]

import math
import re

from edge_app.telemetry.registry import Counter, Gauge, Histogram, Instrument, Registry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SUFFIX = {"Milliseconds": "_ms", "Seconds": "_seconds", "Bytes": "_bytes", "Percent": "_percent"}


def prometheus_name(item: Instrument) -> str:
    """``InferenceTime`` (ms) -> ``edge_app_inference_time_ms`` (family name; counter samples
    add ``_total``)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", item.key.name).lower()
    suffix = _SUFFIX.get(item.unit, "")
    return "edge_app_" + (snake if snake.endswith(suffix) else snake + suffix)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(registry: Registry) -> str:
    """The whole registry as exposition text."""
    families: dict[str, list[Instrument]] = {}
    for item in registry.instruments():
        name = prometheus_name(item)
        # text format 0.0.4: a counter's TYPE line names the sample, "_total" included
        families.setdefault(name + "_total" if item.kind == "counter" else name, []).append(item)
    lines: list[str] = []
    for name, items in families.items():
        first = items[0]
        kind = {"counter": "counter", "gauge": "gauge", "histogram": "summary"}[first.kind]
        lines.append(f"# HELP {name} {first.help or first.key.name} ({first.unit})")
        lines.append(f"# TYPE {name} {kind}")
        for item in items:
            pairs = list(item.key.dims)
            if isinstance(item, Counter | Gauge):
                with item.lock:
                    value = item.value
                lines.append(f"{name}{_labels(pairs)} {_num(value)}")
            elif isinstance(item, Histogram):
                for q in (0.5, 0.95):
                    quantile = [*pairs, ("quantile", str(q))]
                    lines.append(f"{name}{_labels(quantile)} {_num(item.quantile(q))}")
                with item.lock:
                    total, count = item.total, item.count
                lines.append(f"{name}_sum{_labels(pairs)} {_num(total)}")
                lines.append(f"{name}_count{_labels(pairs)} {count}")
    return "\n".join(lines) + "\n"
