"""A new active version is picked up without blocking requests: the old version keeps serving
until the new one has loaded in the background."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.model_registry import ActiveModels, ModelVersion, set_active
from shared.serving.model_data import load_version
from shared.stores.artifacts import LocalArtifactStore
from tests.helpers import client_for
from tests.test_serving_support import (
    azure_runtime,
    catalogue_model,
    popularity_reranker,
    publish_catalogue,
)
from training.publish import write_artifact


def test_new_version_loads_in_the_background_while_the_old_one_serves(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    v1 = publish_catalogue(runtime)
    runtime.recommender.warm("default")
    client = client_for(runtime)
    assert client.get("/api/recommendations/u1").json()["modelVersion"] == v1

    release = threading.Event()
    models = runtime.recommender.models

    def slow_loader(artifacts, model):  # the artifact download takes a while
        release.wait(10)
        return load_version(artifacts, model)

    models.loader = slow_loader
    v2 = publish_catalogue(runtime, seed=1)
    started = time.perf_counter()
    bodies = [client.get("/api/recommendations/u1").json() for _ in range(3)]
    assert time.perf_counter() - started < 2  # nobody waited for the load
    assert {(b["modelVersion"], b["source"]) for b in bodies} == {(v1, "cache")}
    release.set()
    models.wait_idle()
    body = client.get("/api/recommendations/u1").json()
    assert (body["modelVersion"], body["source"]) == (v2, "cache")
    ready = client.get("/api/ready").json()
    assert ready["model"]["activeVersion"] == ready["model"]["servingVersion"] == v2


def version_of(active: ActiveModels) -> str:
    model = active.get("default")
    assert model is not None
    return model.version


def test_active_pointer_is_refreshed_in_the_background(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    v1 = publish_catalogue(runtime)
    v2 = publish_catalogue(runtime, seed=1)
    store = runtime.backends.store
    set_active(store, "default", v1)
    active = ActiveModels(store, refresh_seconds=0.05)
    assert version_of(active) == v1
    set_active(store, "default", v2)
    time.sleep(0.06)
    assert version_of(active) == v1  # stale entry answered, refresh started
    deadline = time.monotonic() + 5
    while version_of(active) != v2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert version_of(active) == v2


def test_an_experiment_variant_can_serve_an_older_version(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    first = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    v1 = publish_catalogue(first, users=[f"u{n}" for n in range(10)])
    experiments = [{"name": "vs", "variants": [
        {"name": "old", "share": 0.5, "modelVersion": v1},
        {"name": "new", "share": 0.5},
    ]}]
    from shared.stores.factory import build_backends
    from tests.helpers import runtime_on

    settings = first.settings.model_copy(update={"experiments": json.dumps(experiments)})
    runtime = runtime_on(settings, build_backends(settings))
    v2 = publish_catalogue(runtime, users=[f"u{n}" for n in range(10)], seed=1)
    runtime.recommender.warm("default")
    client = client_for(runtime)
    for _ in range(2):  # the first request for v1 starts its load
        bodies = [client.get(f"/api/recommendations/u{n}").json() for n in range(10)]
        runtime.recommender.models.wait_idle()
    versions = {b["variant"]: b["modelVersion"] for b in bodies}
    assert versions == {"old": v1, "new": v2}
    assert all(b["source"] == "cache" for b in bodies)


def test_users_of_a_variant_naming_an_unknown_version_are_outside_the_experiment(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Labelled with the variant, they were served the active version: the experiment
    compared control with control."""
    from shared.stores.factory import build_backends
    from tests.helpers import runtime_on

    experiments = [{"name": "vs", "variants": [
        {"name": "typo", "share": 0.5, "modelVersion": "v19990101000000000000"},
        {"name": "new", "share": 0.5},
    ]}]
    base = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    settings = base.settings.model_copy(update={"experiments": json.dumps(experiments)})
    runtime = runtime_on(settings, build_backends(settings))
    version = publish_catalogue(runtime, users=[f"u{n}" for n in range(10)])
    runtime.recommender.warm("default")
    client = client_for(runtime)
    with caplog.at_level("WARNING", logger="shared.serving.recommender"):
        bodies = [client.get(f"/api/recommendations/u{n}").json() for n in range(10)
                  for _ in range(3)]
    assert {b["modelVersion"] for b in bodies} == {version}
    assert {b["variant"] for b in bodies} == {"new", None}  # nobody labelled "typo"
    assert None in {b["variant"] for b in bodies}
    assert len([r for r in caplog.records if "does not have" in r.getMessage()]) == 1


def test_rolling_back_to_a_version_in_memory_makes_it_the_served_one(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    client = client_for(runtime)
    v1 = publish_catalogue(runtime)
    runtime.recommender.warm("default")
    assert client.get("/api/recommendations/u1").json()["modelVersion"] == v1
    v2 = publish_catalogue(runtime, seed=1)
    client.get("/api/recommendations/u1")
    runtime.recommender.models.wait_idle()
    assert client.get("/api/recommendations/u1").json()["modelVersion"] == v2
    set_active(runtime.backends.store, "default", v1)  # rollback; v1 is still loaded
    assert client.get("/api/recommendations/u1").json()["modelVersion"] == v1
    ready = client.get("/api/ready").json()
    assert ready["model"]["activeVersion"] == ready["model"]["servingVersion"] == v1


def test_files_left_by_an_earlier_model_in_the_folder_are_not_read(tmp_path: Path) -> None:
    """Written into a folder that held a re-ranked model, a model without a re-ranker (or
    neighbours) serves without them: the manifest names the artifact's own files."""
    store = LocalArtifactStore(tmp_path)
    manifest = {"version": "v1", "tenant": "t"}
    write_artifact(store, catalogue_model(["u1"], reranker_onnx=popularity_reranker()),
                   manifest, "t/v1")
    first = load_version(store, ModelVersion("t", "v1", "2026-01-01T00:00:00+00:00", []))
    assert first.reranker is not None and first.neighbours is not None

    second = catalogue_model(["u1"])
    second.extra_files.clear()  # no similar.npz this time
    write_artifact(store, second, manifest, "t/v1")
    assert (tmp_path / "t" / "v1" / "reranker.onnx").exists()  # still there, not read
    again = load_version(store, ModelVersion("t", "v1", "2026-01-01T00:00:00+00:00", []))
    assert again.reranker is None
    assert again.neighbours is None


def test_one_tenants_unparseable_artifact_does_not_stop_another_tenants_load(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
) -> None:
    """Parsing ran under the shared artifacts breaker: a truncated file of tenant ta opened
    it, and tenant tb's healthy version then failed with 'artifacts circuit is open'."""
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_BREAKER_FAILURES=1)
    broken = publish_catalogue(runtime, tenant="ta")
    artifacts = runtime.backends.artifacts
    (npz,) = [p for p in artifacts.list(f"ta/{broken}/") if p.endswith("similar.npz")]
    artifacts.put(npz, artifacts.get(npz)[:40])  # truncated
    fine = publish_catalogue(runtime, tenant="tb")
    client = client_for(runtime)
    client.get("/api/recommendations/u1?tenant=ta")
    runtime.recommender.models.wait_idle()
    body = client.get("/api/recommendations/u1?tenant=tb").json()
    runtime.recommender.models.wait_idle()
    body = client.get("/api/recommendations/u1?tenant=tb").json()
    assert (body["modelVersion"], body["source"]) == (fine, "cache")
    assert runtime.recommender.breakers.artifacts.state == "closed"


def test_a_slow_first_read_of_one_tenant_does_not_stall_another_tenants_lookup(
    tmp_path: Path,
) -> None:
    """get_nowait runs on the event loop: it waited on the lock a new tenant's store read
    held (any caller can name a new tenant), stalling every request of the process."""
    from shared.stores.documents import SqliteStore

    store = SqliteStore(tmp_path / "s.sqlite3")
    slow_reads = threading.Event()
    real_read = store.read

    def read(container: str, item_id: str, partition_key: str) -> dict[str, Any] | None:
        if partition_key == "new" and slow_reads.is_set():
            time.sleep(1.0)
        return real_read(container, item_id, partition_key)

    store.read = read  # type: ignore[method-assign]
    active = ActiveModels(store, refresh_seconds=0.05)
    assert active.get("known") is None  # read once, remembered
    time.sleep(0.06)  # stale: the next lookup refreshes in the background
    slow_reads.set()
    first_read = threading.Thread(target=active.get, args=("new",))
    first_read.start()
    time.sleep(0.1)  # the new tenant's read is under way
    started = time.monotonic()
    assert active.get_nowait("known") == (True, None)
    assert time.monotonic() - started < 0.2
    first_read.join()
