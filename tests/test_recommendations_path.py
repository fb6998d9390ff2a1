"""The request path end to end on real Redis, the Cosmos-protocol server and Azurite."""

from __future__ import annotations

import json

import pytest
import redis

from shared.keys import candidates_cache_key
from shared.stores.factory import Backends
from tests.conftest import azure_settings
from tests.helpers import client_for, runtime_on, tiny_interactions
from training.retrain import train_and_publish


@pytest.fixture
def published(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str):
    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection)
    from shared.stores.factory import build_backends

    backends = build_backends(settings)
    runtime = runtime_on(settings, backends)
    version = train_and_publish(runtime, tiny_interactions(), "default")
    return runtime, version, redis_client


def test_known_user_is_answered_from_redis(published) -> None:
    runtime, version, _ = published
    body = client_for(runtime).get("/api/recommendations/u1?k=2").json()
    assert body["source"] == "cache"
    assert body["modelVersion"] == version.version
    # u1 saw a and b: the most popular unseen items are c then d/e
    assert next(i["itemId"] for i in body["items"]) == "c"
    assert "a" not in [i["itemId"] for i in body["items"]]
    assert [i["rank"] for i in body["items"]] == [1, 2]


def test_cache_miss_reads_cosmos_and_writes_back(published) -> None:
    runtime, version, r = published
    r.flushdb()
    client = client_for(runtime)
    first = client.get("/api/recommendations/u2").json()
    assert first["source"] == "store"
    assert {i["itemId"] for i in first["items"]} == {"b", "e"}
    assert r.exists(candidates_cache_key("default", version.version, "u2"))
    assert client.get("/api/recommendations/u2").json()["source"] == "cache"


def test_unknown_user_gets_cold_start_popular_items(published) -> None:
    runtime, _, _ = published
    body = client_for(runtime).get("/api/recommendations/stranger?k=3").json()
    assert body["source"] == "cold_start"
    assert [i["itemId"] for i in body["items"]] == ["a", "b", "c"]


def test_artifact_is_published_with_manifest(published) -> None:
    runtime, version, _ = published
    backends: Backends = runtime.backends
    manifest = json.loads(backends.artifacts.get(f"default/{version.version}/manifest.json"))
    assert manifest["version"] == version.version
    assert manifest["rows"] == {"interactions": 10, "users": 4, "items": 5}
    assert manifest["generator"] == "popularity"
    assert "created" in manifest


def test_redis_down_still_answers_from_cosmos_marked_degraded(
    cosmos_endpoint: str, azurite_connection: str, tmp_path
) -> None:
    from tests import services

    with services.redis_server() as port:
        settings = azure_settings(port, cosmos_endpoint, azurite_connection)
        from shared.stores.factory import build_backends

        runtime = runtime_on(settings, build_backends(settings))
        train_and_publish(runtime, tiny_interactions(), "default")
    # the redis-server is stopped now
    body = client_for(runtime).get("/api/recommendations/u1").json()
    assert body["source"] == "degraded"
    assert body["items"][0]["itemId"] == "c"


@pytest.mark.parametrize(
    ("url", "status", "fragment"),
    [
        ("/api/recommendations/u1?k=0", 422, "k"),
        ("/api/recommendations/u1?k=101", 422, "k"),
        ("/api/recommendations/u1?k=ten", 422, "k"),
        ("/api/recommendations/bad%20id", 422, "user_id"),
        ("/api/recommendations/u1?tenant=no%20such", 422, "tenant"),
        ("/api/recommendations/u1?tenant=othertenant", 404, "no model has been published"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(published, url: str, status: int,
                                             fragment: str) -> None:
    runtime, _, _ = published
    response = client_for(runtime).get(url)
    assert response.status_code == status
    assert fragment in response.json()["error"]
