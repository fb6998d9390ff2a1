"""In-memory OpenTelemetry providers, installed once per process for the telemetry tests."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry


@lru_cache(maxsize=1)
def capture() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    telemetry.recheck_tracing()
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Metric name -> its data points, as of now."""
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def total(reader: InMemoryMetricReader, name: str, **attrs: Any) -> float:
    """Sum of a counter's (or a histogram's count of) points matching the attributes."""
    value = 0.0
    for p in metric_points(reader).get(name, []):
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            value += float(p.value if hasattr(p, "value") else p.count)
    return value
