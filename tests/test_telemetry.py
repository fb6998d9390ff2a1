"""Each metric moves when its event happens, and spans nest under the request's span."""

from __future__ import annotations

from shared import telemetry
from tests.telemetry_capture import capture, metric_points, total


def test_spans_nest_under_the_current_span() -> None:
    spans, _ = capture()
    spans.clear()
    with telemetry.span("request"), telemetry.span("cache.get", hit=True):
        pass
    finished = {s.name: s for s in spans.get_finished_spans()}
    child, parent = finished["cache.get"], finished["request"]
    assert child.parent is not None and parent.context is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.attributes is not None and child.attributes["hit"] is True


def test_counters_and_histograms_move_with_their_events() -> None:
    _, reader = capture()
    before_hits = total(reader, "reco.cache.lookups", hit=True)
    before_degraded = total(reader, "reco.degraded", tenant="t1")
    before_dead = total(reader, "reco.events", outcome="dead_lettered")
    telemetry.cache_lookup(hit=True)
    telemetry.request_served("degraded", "t1", 3.5)
    telemetry.events_processed(accepted=5, duplicates=0, dead_lettered=2)
    telemetry.reranked(0.4)
    telemetry.fallback("cache", "store")
    assert total(reader, "reco.cache.lookups", hit=True) == before_hits + 1
    assert total(reader, "reco.degraded", tenant="t1") == before_degraded + 1
    assert total(reader, "reco.events", outcome="dead_lettered") == before_dead + 2
    assert total(reader, "reco.request.duration", source="degraded") >= 1
    assert total(reader, "reco.rerank.duration") >= 1
    assert total(reader, "reco.fallbacks", **{"from": "cache", "to": "store"}) >= 1


def test_gauges_report_breaker_state_and_model_age() -> None:
    _, reader = capture()
    telemetry.breaker_state("redis", "open")
    telemetry.model_served("t1", "v1", created_unix=0.0)
    points = metric_points(reader)
    (breaker,) = [p for p in points["reco.breaker.state"] if p.attributes["backend"] == "redis"]
    assert breaker.value == 2
    (age,) = [p for p in points["reco.model.age"] if p.attributes["tenant"] == "t1"]
    assert age.attributes["version"] == "v1" and age.value > 1e9
    telemetry.model_served("t1", "v2", created_unix=0.0)
    versions = {p.attributes["version"] for p in metric_points(reader)["reco.model.age"]
                if p.attributes["tenant"] == "t1"}
    assert versions == {"v2"}


def test_feedback_batches_count_their_outcomes(tmp_path) -> None:
    import json
    from datetime import UTC, datetime

    from shared.feedback.process import process_batch
    from shared.stores.documents import SqliteStore

    _, reader = capture()
    before = {o: total(reader, "reco.events", outcome=o)
              for o in ("accepted", "duplicate", "dead_lettered")}
    event = {"eventId": "t-1", "tenant": "default", "userId": "u1", "itemId": "i1",
             "type": "click", "timestamp": datetime.now(UTC).isoformat()}
    body = json.dumps(event).encode()
    store = SqliteStore(tmp_path / "s.sqlite3")
    process_batch(store, [body, b"{nope"])
    process_batch(store, [body])
    assert total(reader, "reco.events", outcome="accepted") == before["accepted"] + 1
    assert total(reader, "reco.events", outcome="duplicate") == before["duplicate"] + 1
    assert total(reader, "reco.events", outcome="dead_lettered") == before["dead_lettered"] + 1


def test_a_training_run_records_its_holdout_metrics(tmp_path) -> None:
    from shared.stores.factory import build_backends
    from tests.conftest import embedded_settings
    from tests.helpers import runtime_on
    from tests.retrain_data import clustered
    from training.retrain import retrain_tenant

    _, reader = capture()
    settings = embedded_settings(tmp_path)
    runtime = runtime_on(settings, build_backends(settings))
    result = retrain_tenant(runtime, "tele", clustered())
    assert result.status == "published"
    points = [p for p in metric_points(reader)["reco.training.metric"]
              if p.attributes["tenant"] == "tele"]
    names = {p.attributes["metric"] for p in points}
    assert {"holdout_ndcg@10", "gate_passed"} <= names
    assert {p.attributes["version"] for p in points} == {result.version}


def test_request_spans_keep_no_user_id_of_the_url() -> None:
    """The HTTP instrumentation Application Insights turns on records the path and query:
    /api/users/<email> (the deletion request itself) and ?user=... reached telemetry."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(telemetry.redacting_processor())
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    for path, query in [("/api/recommendations/ann@example.com", "k=3&recent=i1"),
                        ("/api/users/ann@example.com", ""),
                        ("/api/items/i9/similar", "user=ann@example.com")]:
        with tracer.start_as_current_span("GET", attributes={
                "url.path": path, "url.query": query,
                "url.full": f"https://h{path}?{query}"}):
            pass
    spans = [dict(s.attributes or {}) for s in exported.get_finished_spans()]
    assert [s["url.path"] for s in spans] == [
        "/api/recommendations/{user_id}", "/api/users/{user_id}", "/api/items/i9/similar"]
    assert all("example.com" not in str(s) for s in spans)


def test_application_insights_gets_the_redacting_processor(monkeypatch) -> None:
    import azure.monitor.opentelemetry as monitor

    from shared.settings import Settings

    seen: dict[str, object] = {}
    monkeypatch.setattr(monitor, "configure_azure_monitor", lambda **kw: seen.update(kw))
    monkeypatch.setattr(telemetry, "get_settings", lambda: Settings(
        APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=0"))
    monkeypatch.setattr(telemetry, "_configured", False)
    assert telemetry.configure_telemetry()
    processors = seen["span_processors"]
    assert isinstance(processors, list) and len(processors) == 1
    assert type(processors[0]).__name__ == "RedactUrls"
