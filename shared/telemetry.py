"""Traces and metrics through OpenTelemetry; Application Insights only when configured.

Code calls the small functions below; with no connection string the OpenTelemetry API's no-op
providers make them nearly free, and nothing leaves the process.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from shared.settings import ConfigurationError, get_settings

log = logging.getLogger(__name__)
_configured = False
TRACING_RECHECK_SECONDS = 1.0
_tracing = False  # a tracer provider is installed (OpenTelemetry never uninstalls one)
_tracing_checked = -math.inf  # monotonic time of the last "not installed" answer

tracer = trace.get_tracer("recommender")
_meter = metrics.get_meter("recommender")

_request_ms = _meter.create_histogram(
    "reco.request.duration", unit="ms", description="Recommendation latency by answer source"
)
_cache_lookups = _meter.create_counter(
    "reco.cache.lookups", description="Candidate lookups in the hot cache, by hit"
)
_fallbacks = _meter.create_counter(
    "reco.fallbacks", description="Answers that fell back from one source to the next"
)
_degraded = _meter.create_counter("reco.degraded", description="Answers marked degraded")
_rerank_ms = _meter.create_histogram(
    "reco.rerank.duration", unit="ms", description="ONNX re-rank time per request"
)
_events = _meter.create_counter(
    "reco.events", description="Feedback events by outcome (accepted, duplicate, dead_lettered)"
)
_training = _meter.create_histogram(
    "reco.training.metric", description="Offline metrics of each training run"
)

_state_lock = threading.Lock()
_breaker_states: dict[str, int] = {}  # backend -> 0 closed, 1 half-open, 2 open
_served_models: dict[tuple[str, str], float] = {}  # (tenant, version) -> created (unix s)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


def _observe_breakers(_: CallbackOptions) -> Iterable[Observation]:
    with _state_lock:
        return [Observation(v, {"backend": b}) for b, v in _breaker_states.items()]


def _observe_model_age(_: CallbackOptions) -> Iterable[Observation]:
    now = time.time()
    with _state_lock:
        return [
            Observation(now - created, {"tenant": t, "version": v})
            for (t, v), created in _served_models.items()
        ]


_meter.create_observable_gauge(
    "reco.breaker.state", [_observe_breakers], description="0 closed, 1 half-open, 2 open"
)
_meter.create_observable_gauge(
    "reco.model.age", [_observe_model_age], unit="s", description="Age of the served version"
)


def configure_telemetry() -> bool:
    """Sends traces, metrics and logs to Application Insights when the setting is present.

    Called when the Function App is imported: a setting that cannot be used must not stop
    the app from loading (its routes then answer 503 naming the setting), so it is logged."""
    global _configured
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        log.error("telemetry not configured: %s", exc)
        return False
    if _configured or not settings.appinsights_connection_string:
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=settings.appinsights_connection_string,
                            span_processors=[redacting_processor()])
    _configured = True
    recheck_tracing()
    log.info("telemetry: Application Insights enabled")
    return True


# Paths whose next segment is a user id; a query string may carry user and item ids.
_USER_PATH = re.compile(r"(/api/(?:recommendations|users))/[^/?#]+")
_URL_ATTRIBUTES = ("url.path", "url.full", "http.target", "http.url")


def redacted_url(value: str) -> str:
    """The URL or path with the user id replaced by its route parameter and no query."""
    return _USER_PATH.sub(r"\1/{user_id}", value.split("?", 1)[0])


def redacting_processor() -> Any:
    """A span processor that keeps user ids out of request spans (personal data): the HTTP
    instrumentation records the request's path and query, which name the user."""
    from opentelemetry.sdk.trace import SpanProcessor

    class RedactUrls(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            attributes = span.attributes or {}
            for key in _URL_ATTRIBUTES:
                if key in attributes:
                    span.set_attribute(key, redacted_url(str(attributes[key])))
            if "url.query" in attributes:
                span.set_attribute("url.query", "")

    return RedactUrls()


def recheck_tracing() -> None:
    """Makes the next span look for a tracer provider again: call it after installing one
    outside `configure_telemetry` (tests); otherwise spans notice it within a second."""
    global _tracing_checked
    _tracing_checked = -math.inf


def _tracing_on() -> bool:
    """Whether a tracer provider is installed. OpenTelemetry's own lookup reads the environment
    on every call while none is, a few microseconds per span on the hot path; a provider is set
    once and never removed, so a yes is kept and a no is re-read at most once a second."""
    global _tracing, _tracing_checked
    if _tracing:
        return True
    now = time.monotonic()
    if now - _tracing_checked < TRACING_RECHECK_SECONDS:
        return False
    _tracing = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    _tracing_checked = now
    return _tracing


def span(name: str, **attributes: str | int | float | bool) -> AbstractContextManager[Any]:
    """A child span of the current request, e.g. around one backend call.

    With no tracer provider installed (telemetry off) this is a bare null context: the
    OpenTelemetry no-op span still costs microseconds, which the hot path notices.
    """
    if not _tracing_on():
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)


_NO_SPAN = nullcontext()


def request_served(source: str, tenant: str, milliseconds: float) -> None:
    _request_ms.record(milliseconds, {"source": source, "tenant": tenant})
    if source == "degraded":
        _degraded.add(1, {"tenant": tenant})


def cache_lookup(hit: bool) -> None:
    _cache_lookups.add(1, {"hit": hit})


def fallback(from_source: str, to_source: str) -> None:
    _fallbacks.add(1, {"from": from_source, "to": to_source})


def reranked(milliseconds: float) -> None:
    _rerank_ms.record(milliseconds)


def events_processed(accepted: int, duplicates: int, dead_lettered: int) -> None:
    for outcome, n in (("accepted", accepted), ("duplicate", duplicates),
                       ("dead_lettered", dead_lettered)):
        if n:
            _events.add(n, {"outcome": outcome})


def breaker_state(backend: str, state: str) -> None:
    with _state_lock:
        _breaker_states[backend] = BREAKER_STATES[state]


def model_served(tenant: str, version: str, created_unix: float) -> None:
    with _state_lock:
        for key in [k for k in _served_models if k[0] == tenant and k[1] != version]:
            del _served_models[key]
        _served_models[(tenant, version)] = created_unix


def training_run(tenant: str, version: str, metrics_: dict[str, float]) -> None:
    for name, value in metrics_.items():
        _training.record(value, {"tenant": tenant, "version": version, "metric": name})
