"""Telemetry of the request path: one span per recommendation with a child per backend call and
the re-rank, and each metric moving when its event happens (in-memory exporter and reader)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import redis

from shared.keys import candidates_cache_key
from shared.reranking.features import FEATURES, build_features
from shared.serving.ranking import features_one
from tests.helpers import client_for
from tests.telemetry_capture import capture, metric_points, total
from tests.test_serving_support import azure_runtime, popularity_reranker, publish_catalogue


@pytest.fixture
def served(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str):
    spans, reader = capture()  # before the runtime: its breakers report their first state
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_DIVERSITY_MAX_SHARE=1.0, RECO_BREAKER_FAILURES=2,
                            RECO_BREAKER_RESET_SECONDS=60)
    version = publish_catalogue(runtime, reranker_onnx=popularity_reranker())
    runtime.recommender.warm("default")
    return runtime, version, redis_client, spans, reader


def _request_tree(spans: Any) -> tuple[Any, list[str]]:
    """The last recommendation span and the names of its direct children."""
    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.name == "recommend"][-1:]
    children = [s.name for s in finished
                if s.parent is not None and s.parent.span_id == request.context.span_id]
    return request, children


def test_a_cache_hit_has_a_cache_child_and_no_store_child(served) -> None:
    runtime, _, _, spans, _ = served
    spans.clear()
    body = client_for(runtime).get("/api/recommendations/u1?k=3").json()
    assert body["source"] == "cache"
    request, children = _request_tree(spans)
    assert request.attributes["tenant"] == "default"
    assert "cache.read" in children and "rerank" in children
    assert "store.read" not in children


def test_a_miss_reads_the_store_under_the_same_request_span(served) -> None:
    runtime, version, redis_client, spans, reader = served
    redis_client.delete(candidates_cache_key("default", version, "u2"))
    misses = total(reader, "reco.cache.lookups", hit=False)
    to_store = total(reader, "reco.fallbacks", **{"from": "cache", "to": "store"})
    spans.clear()
    body = client_for(runtime).get("/api/recommendations/u2?k=3").json()
    assert body["source"] == "store"
    _, children = _request_tree(spans)
    assert {"cache.read", "store.read", "rerank"} <= set(children)
    assert total(reader, "reco.cache.lookups", hit=False) == misses + 1
    assert total(reader, "reco.fallbacks", **{"from": "cache", "to": "store"}) == to_store + 1


def test_hits_reranks_and_served_requests_are_counted(served) -> None:
    runtime, _, _, _, reader = served
    hits = total(reader, "reco.cache.lookups", hit=True)
    reranks = total(reader, "reco.rerank.duration")
    answered = total(reader, "reco.request.duration", source="cache", tenant="default")
    client = client_for(runtime)
    for user in ("u1", "u3"):
        assert client.get(f"/api/recommendations/{user}?k=3").json()["source"] == "cache"
    assert total(reader, "reco.cache.lookups", hit=True) == hits + 2
    assert total(reader, "reco.rerank.duration") == reranks + 2
    assert total(reader, "reco.request.duration", source="cache", tenant="default") \
        == answered + 2


def test_an_open_breaker_shows_in_the_gauge_and_answers_count_as_degraded(served) -> None:
    runtime, _, _, _, reader = served

    def cache_state() -> float:
        points = metric_points(reader)["reco.breaker.state"]
        return float(next(p.value for p in points if p.attributes["backend"] == "cache"))

    assert cache_state() == 0  # closed
    degraded = total(reader, "reco.degraded", tenant="default")
    breaker = runtime.recommender.breakers.cache
    breaker.failure()
    breaker.failure()  # the threshold: it opens
    assert breaker.state == "open" and cache_state() == 2
    body = client_for(runtime).get("/api/recommendations/u1?k=3").json()
    assert body["source"] == "degraded"
    assert total(reader, "reco.degraded", tenant="default") == degraded + 1
    breaker.success()
    assert cache_state() == 0


def test_the_served_version_reports_its_age(served) -> None:
    _, version, _, _, reader = served
    (age,) = [p for p in metric_points(reader)["reco.model.age"]
              if p.attributes["tenant"] == "default"]
    assert age.attributes["version"] == version
    assert 0 <= age.value < 600


def test_no_op_telemetry_costs_little_per_request() -> None:
    """Without providers (a fresh interpreter would have none) the calls a request makes are
    no-ops; measured here with the in-memory ones installed, an upper bound."""
    from shared import telemetry

    capture()
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        with telemetry.span("recommend", tenant="t"), telemetry.span("cache.read"):
            telemetry.cache_lookup(hit=True)
        telemetry.reranked(0.1)
        telemetry.request_served("cache", "t", 1.0)
    per_request = (time.perf_counter() - started) / n
    assert per_request < 0.002


def test_request_time_features_equal_the_training_features(served) -> None:
    """The serving fast path builds exactly the rows `build_features` (training) builds."""
    runtime, _, _, _, _ = served
    data = runtime.recommender.models.current("default")
    assert data is not None
    rng = np.random.default_rng(7)
    n = data.n_items
    for trial in range(50):
        c = int(rng.integers(1, 40))
        codes = rng.integers(0, n + 1, c).astype(np.int64)  # n: the unknown-item row
        scores = (rng.random(c) * 3).astype(np.float32)
        window = None if trial % 2 else (rng.random(n + 1) * 20).astype(np.float32)
        history = rng.integers(0, n, int(rng.integers(0, 21)) if trial % 3 else 0)
        now = time.time() + float(rng.random()) * 1e5
        fast = features_one(data, codes, scores, window, history, float(trial), now)
        hist = np.full((1, 20), -1, np.int64)
        hist[0, : history.size] = history
        wpop = np.zeros(c, np.float32) if window is None else window[codes]
        slow = build_features(codes.reshape(1, -1), scores.reshape(1, -1), wpop.reshape(1, -1),
                              data.table, hist, np.array([float(trial)]), np.array([now]),
                              data.pop_pct)
        assert fast.shape == (c, len(FEATURES))
        np.testing.assert_array_equal(fast, slow)
