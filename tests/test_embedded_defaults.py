"""With no settings at all, the whole path runs in-process: LRU, SQLite, a local folder."""

from __future__ import annotations

from pathlib import Path

from shared.stores.factory import build_backends
from tests.conftest import embedded_settings
from tests.helpers import client_for, runtime_on, tiny_interactions
from training.retrain import train_and_publish


def test_embedded_backends_are_chosen_when_nothing_is_set(tmp_path: Path) -> None:
    backends = build_backends(embedded_settings(tmp_path))
    assert (backends.cache.name, backends.store.name, backends.artifacts.name) == (
        "lru", "sqlite", "folder",
    )


def test_embedded_train_publish_serve(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    runtime = runtime_on(settings, build_backends(settings))
    version = train_and_publish(runtime, tiny_interactions(), "default")
    client = client_for(runtime)
    body = client.get("/api/recommendations/u3").json()
    assert body["source"] == "cache" and body["modelVersion"] == version.version
    assert [i["itemId"] for i in body["items"]] == ["c", "d"]
    assert client.get("/api/health").json() == {"status": "ok"}


def test_api_key_is_required_when_configured(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path, RECO_API_KEY="s3cret")
    runtime = runtime_on(settings, build_backends(settings))
    train_and_publish(runtime, tiny_interactions(), "default")
    client = client_for(runtime)
    assert client.get("/api/recommendations/u1").status_code == 401
    ok = client.get("/api/recommendations/u1", headers={"x-api-key": "s3cret"})
    assert ok.status_code == 200
    # a non-ASCII key is a wrong key (compare_digest refuses non-ASCII str: once a 500)
    for path in ("/api/recommendations/u1", "/api/popular"):
        wrong = client.get(path, headers={"x-api-key": "s3cr\u00e9t".encode("latin-1")})
        assert wrong.status_code == 401, path


def test_only_liveness_and_the_schema_answer_without_the_api_key(tmp_path: Path) -> None:
    """/api/ready answered anyone: which tenants exist (404 or not), their model versions and
    the state of each backend, while every data route asked for the key."""
    settings = embedded_settings(tmp_path, RECO_API_KEY="s3cret")
    runtime = runtime_on(settings, build_backends(settings))
    train_and_publish(runtime, tiny_interactions(), "default")
    runtime.recommender.warm("default")
    client = client_for(runtime)
    assert client.get("/api/health").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    for path in ("/api/ready", "/api/ready?tenant=nobody"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json() == {"error": "missing or wrong x-api-key header"}
    assert client.get("/api/ready", headers={"x-api-key": "s3cret"}).json()["ready"] is True
