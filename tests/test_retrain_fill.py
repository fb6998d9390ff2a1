"""Repopulation at the edges: a fill killed half-way, throttled Cosmos writes, and expiry.

Real Redis, the Cosmos-protocol server and Azurite. Failures are injected at the narrowest
seam there is: a proxy in front of the store's Cosmos container client for `recommendations`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.ids import TENANT_RULE
from shared.keys import (
    candidates_cache_key,
    candidates_doc_id,
    user_partition,
    version_cache_prefix,
)
from shared.model_registry import MODELS, active_version_id
from shared.runtime import Runtime
from shared.serving.recommender import RECOMMENDATIONS
from shared.stores.errors import BackendError
from shared.stores.factory import build_backends
from tests.conftest import azure_settings
from tests.helpers import before_pointer_write, client_for, runtime_on
from tests.retrain_data import clustered, ease_trainer, least_popular_trainer
from training.interactions import DataError
from training.publish import (
    EXPIRED,
    FILLING,
    FillOptions,
    StoreWriter,
    active_pointer,
    fill,
    load_model,
    version_docs,
    version_status,
)
from training.retrain import LEASE_NAME, RetrainConfig, retrain_tenant

TENANT = "shop"
CHUNK = 5
CONFIG = RetrainConfig(window_days=None, gate_tolerance=0.5,
                       fill=FillOptions(chunk_users=CHUNK, store_concurrency=4,
                                        cache_ttl_seconds=3600))


class ContainerProxy:
    """Wraps the real container client: counts upserts, fails or throttles some of them."""

    def __init__(self, real: Any, fail_after: int | None = None,
                 throttle_every: int | None = None, retry_after_ms: int = 20,
                 after_write: Callable[[int], None] | None = None) -> None:
        self.real = real
        self.after_write = after_write  # called with the number written so far
        self.fail_after = fail_after
        self.throttle_every = throttle_every
        self.retry_after_ms = retry_after_ms
        self.calls = 0
        self.throttled = 0
        self.written: list[str] = []
        self._lock = threading.Lock()

    def upsert_item(self, body: dict[str, Any], **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
            if self.fail_after is not None and len(self.written) >= self.fail_after:
                raise RuntimeError("the process was killed (injected)")
            if self.throttle_every and self.calls % self.throttle_every == 0:
                self.throttled += 1
                error = CosmosHttpResponseError(status_code=429, message="Request rate is large")
                error.headers = {"x-ms-retry-after-ms": str(self.retry_after_ms)}
                raise error
            self.written.append(str(body["id"]))
            written = len(self.written)
        result = self.real.upsert_item(body, **kwargs)
        if self.after_write is not None:
            self.after_write(written)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _proxy(runtime: Runtime, **kwargs: Any) -> ContainerProxy:
    containers = runtime.backends.store._containers  # type: ignore[attr-defined]
    real = containers[RECOMMENDATIONS]
    proxy = ContainerProxy(getattr(real, "real", real), **kwargs)
    containers[RECOMMENDATIONS] = proxy
    return proxy


def _interrupted_publish(runtime: Runtime, seed: int) -> str:
    """A retrain killed part-way through its fill; the version it left filling."""
    _proxy(runtime, fail_after=CHUNK + 1)
    with pytest.raises(BackendError, match="killed"):
        retrain_tenant(runtime, TENANT, clustered(seed=seed), trainer=ease_trainer(),
                       config=CONFIG)
    (pending,) = [str(d["id"]) for d in version_docs(runtime.backends.store, TENANT)
                  if version_status(d) == FILLING]
    return pending


@pytest.fixture
def runtime(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
            tmp_path: Path) -> Runtime:
    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_DATA_DIR=tmp_path / "data")
    return runtime_on(settings, build_backends(settings))


def _answer(runtime: Runtime, user: str, version: str | None = None) -> dict[str, Any]:
    """The API's answer; with `version`, waits (briefly) for serving to load that version,
    since serving swaps to a newly activated version in the background."""
    deadline = time.monotonic() + 15
    while True:
        body = dict(client_for(runtime).get(
            f"/api/recommendations/{user}?tenant={TENANT}").json())
        if version is None or body["modelVersion"] == version or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_a_fill_killed_half_way_leaves_the_old_version_served_and_the_rerun_resumes(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    old = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                         config=CONFIG)
    assert old.status == "published", old.message
    before = _answer(runtime, "u0")
    done_chunks = 6
    proxy = _proxy(runtime, fail_after=done_chunks * CHUNK + 2)  # dies inside chunk 7

    with pytest.raises(BackendError, match="killed"):
        retrain_tenant(runtime, TENANT, clustered(seed=1), trainer=ease_trainer(), config=CONFIG)

    store = runtime.backends.store
    assert active_version_id(store, TENANT) == old.version
    (pending,) = [d for d in version_docs(store, TENANT) if version_status(d) == FILLING]
    new_version = str(pending["id"])
    checkpoint = store.read(MODELS, f"fill|{new_version}", TENANT)
    assert checkpoint is not None and checkpoint["done_chunks"] == done_chunks
    during = _answer(runtime, "u0")
    assert during["modelVersion"] == old.version and during["items"] == before["items"]

    proxy = _proxy(runtime)  # the store works again; count what the rerun writes
    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)

    assert rerun.status == "resumed", rerun.message
    assert rerun.version == new_version and rerun.fill is not None
    users = [str(u) for u in load_model(runtime.backends.artifacts, TENANT,
                                        new_version).user_ids.tolist()]
    total = -(-len(users) // CHUNK)
    assert rerun.fill.chunks_skipped == done_chunks
    assert rerun.fill.chunks_written == total - done_chunks
    assert sorted(proxy.written) == sorted(
        candidates_doc_id(new_version, u) for u in users[done_chunks * CHUNK:]
    )  # only the chunks the killed fill had not finished
    assert active_version_id(store, TENANT) == new_version
    for user in (users[0], users[-1]):  # one from a skipped chunk, one from a resumed one
        body = _answer(runtime, user, new_version)
        assert body["modelVersion"] == new_version and body["source"] == "cache"
    final = store.read(MODELS, new_version, TENANT)
    assert final is not None and final["status"] == "ready"


def test_throttled_cosmos_writes_are_retried_and_wait_at_least_retry_after(
    runtime: Runtime,
) -> None:
    model = ease_trainer()(clustered(n_users=40))
    proxy = _proxy(runtime, throttle_every=3, retry_after_ms=30)
    sleeps: list[float] = []
    options = FillOptions(chunk_users=10, store_concurrency=4)
    with StoreWriter(runtime.backends.store, options, sleep=sleeps.append) as writer:
        docs = [{"id": candidates_doc_id("v1", str(u)), "pk": user_partition(TENANT, str(u)),
                 "version": "v1", "items": [], "scores": []} for u in model.user_ids.tolist()]
        writer.upsert_all(RECOMMENDATIONS, docs)
    assert proxy.throttled > 0 and writer.retries == proxy.throttled
    assert len(sleeps) == proxy.throttled and min(sleeps) >= 0.030
    assert sorted(proxy.written) == sorted(str(d["id"]) for d in docs)  # every doc, once

    stats = fill(runtime.backends, model, TENANT, "v2",
                 options=FillOptions(chunk_users=10, store_concurrency=4))
    assert stats.store_retries > 0
    for user in model.user_ids.tolist():
        doc = runtime.backends.store.read(RECOMMENDATIONS, candidates_doc_id("v2", user),
                                          user_partition(TENANT, user))
        assert doc is not None and len(doc["items"]) > 0


def test_throttled_cosmos_deletes_with_one_writer_count_each_document_once(
    runtime: Runtime,
) -> None:
    """RECO_FILL_STORE_CONCURRENCY=1 on Cosmos: a 429 on one delete is retried for that
    document, not by deleting the chunk again (whose deleted documents then count as absent)."""
    store = runtime.backends.store
    ids = [(candidates_doc_id("v1", f"u{n}"), user_partition(TENANT, f"u{n}")) for n in range(6)]
    store.upsert_many(RECOMMENDATIONS, [{"id": i, "pk": pk, "items": []} for i, pk in ids])
    real = _proxy(runtime).real
    calls = []

    class Throttled(ContainerProxy):
        def delete_item(self, item: str, **kwargs: Any) -> Any:
            calls.append(item)
            if len(calls) == 4:
                error = CosmosHttpResponseError(status_code=429, message="Request rate is large")
                error.headers = {"x-ms-retry-after-ms": "1"}
                raise error
            return self.real.delete_item(item, **kwargs)

    store._containers[RECOMMENDATIONS] = Throttled(real)  # type: ignore[attr-defined]
    with StoreWriter(store, FillOptions(store_concurrency=1), sleep=lambda _: None) as writer:
        assert writer.delete_all(RECOMMENDATIONS, ids) == 6
    assert writer.retries == 1 and len(calls) == 7  # the throttled delete, once more
    assert all(store.read(RECOMMENDATIONS, i, pk) is None for i, pk in ids)


def test_a_non_retryable_error_is_not_retried(runtime: Runtime) -> None:
    proxy = _proxy(runtime, fail_after=0)
    sleeps: list[float] = []
    with StoreWriter(runtime.backends.store, FillOptions(store_concurrency=2),
                     sleep=sleeps.append) as writer, pytest.raises(BackendError):
        writer.upsert_all(RECOMMENDATIONS, [{"id": "x", "pk": "p", "items": []}])
    assert sleeps == [] and proxy.calls == 1


def test_the_previous_but_one_version_is_expired_and_the_previous_kept(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    versions = []
    for seed in range(3):
        result = retrain_tenant(runtime, TENANT, clustered(seed=seed), trainer=ease_trainer(),
                                config=CONFIG)
        assert result.status == "published", result.message
        assert result.version is not None
        versions.append(result.version)
    first, second, third = versions
    assert result.expired == [first] and result.previous == second
    store = runtime.backends.store
    statuses = {d["id"]: version_status(d) for d in version_docs(store, TENANT)}
    assert statuses == {first: EXPIRED, second: "ready", third: "ready"}
    assert not list(redis_client.scan_iter(match=f"{version_cache_prefix(TENANT, first)}*"))
    assert list(redis_client.scan_iter(match=f"{version_cache_prefix(TENANT, second)}*"))
    for user in ("u0", "u1", "u7"):
        assert store.read(RECOMMENDATIONS, candidates_doc_id(first, user),
                          user_partition(TENANT, user)) is None
        assert store.read(RECOMMENDATIONS, candidates_doc_id(second, user),
                          user_partition(TENANT, user)) is not None
    assert store.read(MODELS, f"fill|{first}", TENANT) is None


def test_a_staged_version_is_filling_from_its_first_write(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version document without a status reads as ready: killed after such a first write,
    rollback would accept a version without lists. Its first write says "filling"."""
    store = runtime.backends.store
    real = store.upsert
    first_writes: dict[str, Any] = {}

    def spy(container: str, doc: dict[str, Any]) -> None:
        if container == MODELS and doc.get("kind") == "version":
            first_writes.setdefault(str(doc["id"]), doc.get("status"))
        real(container, doc)

    monkeypatch.setattr(store, "upsert", spy)
    result = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                            config=CONFIG)
    assert first_writes == {result.version: FILLING}


def test_interrupted_between_the_switch_and_the_ready_mark_the_rerun_marks_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The active version is never expired as an abandoned fill: the rerun marks it ready."""
    import training.publish as publish

    old = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                         config=CONFIG)
    real = publish.mark_version

    def killed_at_ready(store: Any, tenant: str, version: str, status: str,
                        **fields: Any) -> None:
        if status == "ready":
            raise RuntimeError("killed before the ready mark")
        real(store, tenant, version, status, **fields)

    monkeypatch.setattr(publish, "mark_version", killed_at_ready)
    with pytest.raises(RuntimeError, match="killed"):
        retrain_tenant(runtime, TENANT, clustered(seed=1), trainer=ease_trainer(), config=CONFIG)
    monkeypatch.undo()
    store = runtime.backends.store
    new = active_version_id(store, TENANT)
    assert new != old.version
    assert _answer(runtime, "u0", new)["source"] == "cache"

    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)
    assert active_version_id(store, TENANT) == new, rerun.message
    statuses = {d["id"]: version_status(d) for d in version_docs(store, TENANT)}
    assert statuses == {old.version: "ready", new: "ready"}
    assert _answer(runtime, "u0", new)["source"] == "cache"


def test_a_version_an_experiment_variant_serves_is_not_expired(runtime: Runtime) -> None:
    """RECO_EXPERIMENTS pins versions: expired, its variant's users would get cold starts."""
    import dataclasses
    import json

    from shared.settings import Settings
    from training.retrain import pinned_versions

    first = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                           config=CONFIG)
    assert first.version is not None
    experiments = json.dumps([{"name": "old-model", "tenants": [TENANT], "variants": [
        {"name": "old", "share": 0.5, "modelVersion": first.version},
        {"name": "control", "share": 0.5}]}])
    pinned = pinned_versions(Settings(RECO_EXPERIMENTS=experiments))
    assert pinned == {first.version}
    config = dataclasses.replace(CONFIG, fill=dataclasses.replace(CONFIG.fill, pinned=pinned))
    for seed in (1, 2, 3):
        result = retrain_tenant(runtime, TENANT, clustered(seed=seed), trainer=ease_trainer(),
                                config=config)
        assert result.status == "published", result.message
    statuses = [version_status(d) for d in version_docs(runtime.backends.store, TENANT)]
    assert statuses == ["ready", EXPIRED, "ready", "ready"]  # first, second, third, fourth
    user = "u0"
    assert runtime.backends.store.read(RECOMMENDATIONS, candidates_doc_id(first.version, user),
                                       user_partition(TENANT, user)) is not None


def test_a_run_given_data_trains_it_after_finishing_an_interrupted_publish(
    runtime: Runtime
) -> None:
    """The CLI and the Databricks job pass the data to train: finishing the interrupted
    publish first must not stand in for training it."""
    old = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                         config=CONFIG)
    pending = _interrupted_publish(runtime, seed=1)
    store = runtime.backends.store
    _proxy(runtime)

    given = clustered(seed=2, n_users=30)
    result = retrain_tenant(runtime, TENANT, given, trainer=ease_trainer(), config=CONFIG)

    assert result.status == "published", result.message
    assert result.version not in (old.version, pending) and result.previous == pending
    assert active_version_id(store, TENANT) == result.version
    assert result.version is not None
    published = load_model(runtime.backends.artifacts, TENANT, result.version)
    assert sorted(published.user_ids.tolist()) == sorted(given.user_ids.tolist())


def test_a_rejected_run_still_says_it_finished_an_interrupted_publish(runtime: Runtime) -> None:
    retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(), config=CONFIG)
    pending = _interrupted_publish(runtime, seed=1)
    _proxy(runtime)

    result = retrain_tenant(runtime, TENANT, clustered(seed=2), trainer=least_popular_trainer(),
                            config=CONFIG)

    assert result.status == "rejected"
    assert result.message.startswith(
        f"tenant '{TENANT}': finished the interrupted publish of version {pending}")
    assert "the new model was not published" in result.message


def test_a_user_deleted_while_the_fill_runs_is_not_brought_back_by_it(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    """The DELETE comes after the fill started and before it reached the user: it finds
    nothing of the new version to remove, so the fill must remove what it then wrote."""
    retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(), config=CONFIG)
    data = clustered(seed=1)
    gone = str(sorted(data.user_ids.tolist())[-1])  # the fill's last chunk
    answers: list[int] = []

    def delete_once(written: int) -> None:
        if written == CHUNK and not answers:  # the new version's first chunk is stored
            answers.append(client_for(runtime).delete(
                f"/api/users/{gone}?tenant={TENANT}").status_code)

    _proxy(runtime, after_write=delete_once)
    result = retrain_tenant(runtime, TENANT, data, trainer=ease_trainer(), config=CONFIG)

    assert answers == [200] and result.status == "published", result.message
    assert result.version is not None and result.fill is not None
    users = load_model(runtime.backends.artifacts, TENANT, result.version).user_ids.tolist()
    assert gone in users and result.fill.removed_deleted == 1
    store = runtime.backends.store
    assert store.query_partition(RECOMMENDATIONS, user_partition(TENANT, gone)) == []
    assert not redis_client.exists(candidates_cache_key(TENANT, result.version, gone))
    assert _answer(runtime, gone, result.version)["source"] != "cache"


def test_a_user_deleted_during_an_interrupted_publish_is_not_brought_back_by_its_resume(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    old = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                         config=CONFIG)
    pending = _interrupted_publish(runtime, seed=1)
    store = runtime.backends.store
    users = [str(u) for u in load_model(runtime.backends.artifacts, TENANT,
                                        pending).user_ids.tolist()]
    gone = users[-1]  # in a chunk the killed fill had not written
    _proxy(runtime)
    deleted = client_for(runtime).delete(f"/api/users/{gone}?tenant={TENANT}")
    assert deleted.status_code == 200, deleted.text

    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)

    assert rerun.status == "resumed" and rerun.version == pending, rerun.message
    assert rerun.fill is not None and rerun.fill.skipped_deleted == 1
    assert store.query_partition(RECOMMENDATIONS, user_partition(TENANT, gone)) == []
    assert not redis_client.exists(candidates_cache_key(TENANT, pending, gone))
    assert store.read(RECOMMENDATIONS, candidates_doc_id(pending, users[-2]),
                      user_partition(TENANT, users[-2])) is not None  # the others are there
    assert old.version != pending


def test_training_drops_a_deleted_users_rows_from_before_the_deletion_only(
    runtime: Runtime
) -> None:
    """Capture files and exports still hold a deleted user's events; a user who comes back
    later is a new user whose new events count."""
    from datetime import UTC, datetime

    import numpy as np

    from shared import forgotten
    from training.interactions import Interactions
    from training.retrain import without_deleted_users

    forgotten.record(runtime.backends.store, TENANT, "u1", at=datetime.fromtimestamp(1_000, UTC))
    data = Interactions.from_columns(  # 1_300: a device clock 5 minutes ahead, sent before
        np.array(["u1", "u1", "u2", "u1", "u1"]), np.array(["a", "b", "a", "c", "d"]),
        np.ones(5, np.float32), np.array([500, 1_000, 700, 2_000, 1_300]), source="test",
    )
    records = forgotten.forgotten(runtime.backends.store, TENANT)
    kept, dropped = without_deleted_users(data, TENANT, records)
    assert dropped == 3
    rows = sorted(zip(kept.user_ids[kept.users].tolist(), kept.item_ids[kept.items].tolist(),
                      strict=True))
    assert rows == [("u1", "c"), ("u2", "a")]
    assert without_deleted_users(data, "another-tenant", records)[1] == 0



def test_an_expiry_that_failed_is_retried_by_the_next_run_even_one_without_data(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.publish as publish

    versions = [retrain_tenant(runtime, TENANT, clustered(seed=seed), trainer=ease_trainer(),
                               config=CONFIG).version for seed in (0, 1)]

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise BackendError("cosmos unavailable")

    monkeypatch.setattr(publish, "expire_version", unavailable)
    third = retrain_tenant(runtime, TENANT, clustered(seed=2), trainer=ease_trainer(),
                           config=CONFIG)
    assert third.status == "published" and third.expired == []  # logged, not raised
    monkeypatch.undo()
    store = runtime.backends.store
    assert version_status(store.read(MODELS, str(versions[0]), TENANT) or {}) == "ready"

    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)

    assert rerun.status == "no_data", rerun.message
    assert version_status(store.read(MODELS, str(versions[0]), TENANT) or {}) == EXPIRED


def test_a_run_whose_lease_was_taken_over_mid_fill_leaves_the_switch_to_the_new_holder(
    runtime: Runtime,
) -> None:
    """The run's lease expired while it filled (its renewals could not reach the store, or the
    process was paused) and the next timer run took it over and finished the publish. The
    first run must not switch again: switching to the active version made it its own
    previous, and the expiry then deleted the previous good version."""
    from shared import lease

    old = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                         config=CONFIG)
    store = runtime.backends.store
    taker: list[Any] = []

    def expire_and_take_over(written: int) -> None:
        if written == CHUNK and not taker:
            taker.append(None)
            doc = store.read(lease.LEASES, f"lease|{LEASE_NAME}", TENANT)
            assert doc is not None
            store.upsert(lease.LEASES, {**doc, "expires": "2000-01-01T00:00:00+00:00"})
            taker[0] = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)

    _proxy(runtime, after_write=expire_and_take_over)
    late = retrain_tenant(runtime, TENANT, clustered(seed=1), trainer=ease_trainer(),
                          config=CONFIG)

    (resumed,) = taker
    assert resumed.status == "resumed", resumed.message
    assert late.status == "failed" and "taken over" in late.message, late.message
    pointer = active_pointer(store, TENANT)
    assert pointer is not None
    assert (pointer["version"], pointer["previous"]) == (resumed.version, old.version)
    assert version_status(store.read(MODELS, str(old.version), TENANT) or {}) == "ready"
    assert store.read(RECOMMENDATIONS, candidates_doc_id(str(old.version), "u0"),
                      user_partition(TENANT, "u0")) is not None


def test_a_rollback_during_a_run_stands_and_the_version_it_filled_is_abandoned(
    runtime: Runtime,
) -> None:
    """The run's version passed its gate against the version the operator then rolled back
    from while it filled (a Databricks run lasts hours): switching would undo the rollback."""
    from shared.model_registry import set_active

    first, second = (retrain_tenant(runtime, TENANT, clustered(seed=seed), trainer=ease_trainer(),
                                    config=CONFIG) for seed in (0, 1))
    assert first.version is not None and second.version is not None
    store = runtime.backends.store

    def roll_back_once(written: int) -> None:
        if written == CHUNK:
            set_active(store, TENANT, str(first.version))

    _proxy(runtime, after_write=roll_back_once)
    during = retrain_tenant(runtime, TENANT, clustered(seed=2), trainer=ease_trainer(),
                            config=CONFIG)

    assert during.status == "rejected", during.message
    assert f"against version {second.version}" in during.message
    assert active_version_id(store, TENANT) == first.version
    (pending,) = [str(d["id"]) for d in version_docs(store, TENANT)
                  if version_status(d) == FILLING]
    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)
    assert rerun.status == "no_data" and active_version_id(store, TENANT) == first.version
    assert version_status(store.read(MODELS, pending, TENANT) or {}) == EXPIRED


def test_a_rollback_between_the_publishs_check_and_its_switch_stands(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rollback lands after the publish found the version it was gated against still
    active and before its pointer write: the switch is conditional on that version, so it
    fails instead of overwriting the rollback."""
    from shared.model_registry import set_active

    first, second = (retrain_tenant(runtime, TENANT, clustered(seed=seed), trainer=ease_trainer(),
                                    config=CONFIG) for seed in (0, 1))
    assert first.version is not None and second.version is not None
    store = runtime.backends.store
    before_pointer_write(monkeypatch, store, TENANT,
                         lambda: set_active(store, TENANT, str(first.version)))

    during = retrain_tenant(runtime, TENANT, clustered(seed=2), trainer=ease_trainer(),
                            config=CONFIG)

    assert during.status == "rejected", during.message
    assert (f"against version {second.version}, and version {first.version} has been made "
            "active since") in during.message
    pointer = active_pointer(store, TENANT)
    assert pointer is not None
    assert (pointer["version"], pointer["previous"]) == (first.version, second.version)
    assert [version_status(store.read(MODELS, str(r.version), TENANT) or {})
            for r in (first, second)] == ["ready", "ready"]


def test_an_interrupted_publish_is_not_resumed_over_a_rollback(runtime: Runtime) -> None:
    """The interrupted version passed its gate against the version then active. After a
    rollback it would replace another one, against which it was never compared (and the one
    it beat was bad enough to roll back): it is abandoned, and the run trains afresh."""
    from shared.model_registry import set_active

    first, second = (retrain_tenant(runtime, TENANT, clustered(seed=seed), trainer=ease_trainer(),
                                    config=CONFIG) for seed in (0, 1))
    assert first.version is not None and second.version is not None
    pending = _interrupted_publish(runtime, seed=2)
    store = runtime.backends.store
    _proxy(runtime)
    set_active(store, TENANT, first.version)  # the operator rolls back from the second

    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)

    assert rerun.status == "no_data", rerun.message  # the timer: no events logged here
    assert active_version_id(store, TENANT) == first.version
    assert version_status(store.read(MODELS, pending, TENANT) or {}) == EXPIRED


def test_no_tenant_can_hold_cache_keys_under_another_tenants_version_prefix(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    """Tenant ids allowed ':', so a tenant named "shop:V" was published under keys beginning
    `reco:shop:V:`, which tenant "shop" expiring its version V deletes (and deleting user
    "W:u:x" of "shop" deleted user x's key of a tenant "shop:V:u", version W). Tenant ids have
    no ':' now: such a tenant is refused where its versions would begin, as at every entry."""
    first = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=ease_trainer(),
                           config=CONFIG)
    assert first.version is not None and first.fill is not None
    prefix = version_cache_prefix(TENANT, first.version)
    for squatter in (f"{TENANT}:{first.version}", f"{TENANT}:{first.version}:u"):
        with pytest.raises(DataError, match=re.escape(TENANT_RULE)):
            retrain_tenant(runtime, squatter, clustered(seed=1), trainer=ease_trainer(),
                           config=CONFIG)
        assert version_docs(runtime.backends.store, squatter) == []
    # what the prefix (expiry) and the user keys (deletion) reach is tenant "shop"'s alone
    assert len(list(redis_client.scan_iter(match=f"{prefix}*"))) == first.fill.users
