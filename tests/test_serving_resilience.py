"""Resilience: breakers open and half-open, and a valid request is answered (marked degraded)
while Redis or Cosmos is down, on real servers that the tests stop and start."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.serving.resilience import BreakerOpen, CircuitBreaker, Retry
from shared.stores.factory import build_backends
from tests import services
from tests.conftest import azure_settings
from tests.helpers import client_for, runtime_on
from tests.test_serving_support import publish_catalogue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise ConnectionError("down")


def test_breaker_opens_after_consecutive_failures_and_stops_calling() -> None:
    clock = Clock()
    breaker = CircuitBreaker("cache", failures=3, reset_seconds=5, clock=clock)
    calls = 0

    def counted() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            breaker.call(counted)
    assert breaker.state == "open"
    with pytest.raises(BreakerOpen):
        breaker.call(counted)
    assert calls == 3  # the open breaker did not call the backend


def test_breaker_half_opens_lets_one_probe_through_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker("store", failures=1, reset_seconds=5, clock=clock)
    with pytest.raises(ConnectionError):
        breaker.call(failing)
    clock.now = 4.9
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 5.0
    assert breaker.state == "half_open"
    assert breaker.allow() is True  # the probe
    assert breaker.allow() is False  # everyone else waits for its outcome
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker("store", failures=2, reset_seconds=1, clock=clock)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(failing)
    clock.now = 1.0
    with pytest.raises(ConnectionError):
        breaker.call(failing)  # the probe fails
    assert breaker.state == "open" and breaker.opened_count == 2
    clock.now = 1.5
    with pytest.raises(BreakerOpen):
        breaker.call(failing)


def test_reads_are_retried_with_backoff_then_succeed() -> None:
    breaker = CircuitBreaker("cache", failures=5, reset_seconds=1)
    attempts = []

    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise TimeoutError("slow")
        return "value"

    assert breaker.call(flaky, Retry(attempts=3, base_seconds=0.01)) == "value"
    assert len(attempts) == 2 and breaker.state == "closed"
    assert all(0 <= Retry(base_seconds=0.01, cap_seconds=0.05).delay(a) <= 0.05
               for a in range(6))


@pytest.fixture
def own_redis_runtime(cosmos_endpoint: str, azurite_connection: str, tmp_path: Path):
    """A runtime on a private redis-server the test may stop and restart on the same port."""
    port = services.free_port()
    server = services.redis_server(port)
    server.__enter__()
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_BREAKER_FAILURES=2, RECO_BREAKER_RESET_SECONDS=0.3,
                              RECO_DIVERSITY_MAX_SHARE=1.0)
    runtime = runtime_on(settings, build_backends(settings))
    version = publish_catalogue(runtime)
    runtime.recommender.warm("default")
    state = {"server": server}
    yield runtime, version, port, state
    if state["server"] is not None:
        state["server"].__exit__(None, None, None)


def test_redis_down_answers_from_cosmos_marked_degraded_then_recovers(own_redis_runtime) -> None:
    runtime, version, port, state = own_redis_runtime
    client = client_for(runtime)
    assert client.get("/api/recommendations/u1?k=3").json()["source"] == "cache"
    state["server"].__exit__(None, None, None)  # Redis stops
    state["server"] = None
    for _ in range(4):
        body = client.get("/api/recommendations/u1?k=3").json()
        assert body["source"] == "degraded"
        assert [i["itemId"] for i in body["items"]] == ["i00", "i01", "i02"]  # from Cosmos
        assert body["modelVersion"] == version
    assert runtime.recommender.breakers.cache.state in {"open", "half_open"}
    started = time.perf_counter()
    client.get("/api/recommendations/u2?k=3")
    assert runtime.recommender.breakers.cache.opened_count >= 1
    ready = client.get("/api/ready")
    assert ready.status_code == 503 and "cache is not reachable" in ready.json()["reasons"]
    assert time.perf_counter() - started < 5
    # Redis comes back, empty: after the reset time a probe closes the breaker, the store
    # answers once and writes back, and the next answer comes from the cache again.
    state["server"] = services.redis_server(port)
    state["server"].__enter__()
    time.sleep(0.35)
    sources = [client.get("/api/recommendations/u1?k=3").json()["source"] for _ in range(3)]
    assert sources[-1] == "cache" and "store" in sources
    assert runtime.recommender.breakers.cache.state == "closed"


def test_redis_and_cosmos_down_still_answer_with_the_loaded_popular_list(
    azurite_connection: str,
) -> None:
    with services.cosmos_server() as endpoint:
        port = services.free_port()
        with services.redis_server(port):
            settings = azure_settings(port, endpoint, azurite_connection,
                                      RECO_BREAKER_FAILURES=1, RECO_DIVERSITY_MAX_SHARE=1.0)
            runtime = runtime_on(settings, build_backends(settings))
            publish_catalogue(runtime)
            runtime.recommender.warm("default")
            client = client_for(runtime)
            assert client.get("/api/recommendations/u1").json()["source"] == "cache"
    # both servers are stopped now
    for user in ("u1", "stranger"):
        response = client.get(f"/api/recommendations/{user}?k=3")
        assert response.status_code == 200
        body = response.json()
        assert body["source"] == "degraded"
        assert [i["itemId"] for i in body["items"]] == ["i29", "i28", "i27"]
    assert client.get("/api/popular?k=1").json()["items"][0]["itemId"] == "i29"


def test_cosmos_down_cache_hits_are_still_served_from_the_cache(
    redis_client, azurite_connection: str
) -> None:
    port = int(redis_client.connection_pool.connection_kwargs["port"])
    with services.cosmos_server() as endpoint:
        settings = azure_settings(port, endpoint, azurite_connection, RECO_BREAKER_FAILURES=1)
        runtime = runtime_on(settings, build_backends(settings))
        publish_catalogue(runtime)
        runtime.recommender.warm("default")
    client = client_for(runtime)
    for _ in range(5):
        body = client.get("/api/recommendations/u2?k=2").json()
        assert body["source"] == "cache" and len(body["items"]) == 2
    assert runtime.recommender.breakers.store.state in {"open", "half_open"}
    # an unknown user has no candidates anywhere: cold start from trending/popular, degraded
    assert client.get("/api/recommendations/nobody").json()["source"] == "degraded"


def test_an_unexpected_failure_answers_the_popular_list_with_the_requests_filters_and_rules(
    redis_client, cosmos_endpoint: str, azurite_connection: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last resort (a bug or a corrupt artifact in the ranking code) is still a 200,
    marked degraded, and still honours exclusions, categories and the tenant's blocked items."""
    import shared.serving.recommender as recommender

    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_RULES='{"default": {"blocked": ["i09"]}}')
    runtime = runtime_on(settings, build_backends(settings))
    publish_catalogue(runtime)
    runtime.recommender.warm("default")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the ranking code")

    monkeypatch.setattr(recommender, "select", broken)
    response = client_for(runtime).get(
        "/api/recommendations/u1?k=3&category=books&exclude=i08&recent=i07")
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "degraded"
    assert [i["itemId"] for i in body["items"]] == ["i06", "i05", "i04"]  # popular books


def test_a_cache_key_of_the_wrong_type_is_a_store_read_not_a_redis_outage(
    redis_client, cosmos_endpoint: str, azurite_connection: str,
) -> None:
    """WRONGTYPE counted as a Redis failure: a few requests for one user opened the cache
    breaker for everyone, and the key was never repaired."""
    from shared.keys import candidates_cache_key
    from tests.test_serving_support import make_catalogue

    runtime, version = make_catalogue(redis_client, cosmos_endpoint, azurite_connection)
    runtime.recommender.warm("default")
    key = candidates_cache_key("default", version, "u1")
    redis_client.delete(key)
    redis_client.rpush(key, "not", "a", "string")  # a list where a string belongs
    client = client_for(runtime)
    sources = [client.get("/api/recommendations/u1?k=3").json()["source"] for _ in range(8)]
    assert sources[0] == "store" and sources[-1] == "cache" and "degraded" not in sources
    assert runtime.recommender.breakers.cache.state == "closed"
    assert client.get("/api/recommendations/u2?k=3").json()["source"] == "cache"
