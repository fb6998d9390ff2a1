"""Retrain runs for a tenant never overlap: a lease in the `models` container (insert-once).

Real Redis, Cosmos-protocol server and Azurite; the timer's job (`run_scheduled`, what the
Functions handler calls) runs twice at once, the first held inside training.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import lease
from shared.model_registry import active_version_id
from shared.runtime import Runtime
from shared.stores.documents import DocumentStore
from shared.stores.factory import build_backends
from tests.conftest import azure_settings
from tests.helpers import runtime_on
from training import train
from training.publish import version_docs
from training.retrain import run_scheduled

TENANT = "shop"


@pytest.fixture
def runtime(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
            tmp_path: Path) -> Runtime:
    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_DATA_DIR=tmp_path / "data", RETRAIN_TENANTS=TENANT)
    return runtime_on(settings, build_backends(settings))


def _log_events(runtime: Runtime, n_users: int = 12, per_user: int = 5) -> None:
    now = datetime.now(UTC)
    events = [
        {"eventId": f"e{u}-{j}", "tenant": TENANT, "userId": f"user{u}",
         "itemId": f"item{(u + j * 3) % 9}", "type": "purchase",
         "timestamp": (now - timedelta(minutes=per_user - j)).isoformat()}
        for u in range(n_users) for j in range(per_user)
    ]
    runtime.sink.send(events)


def test_two_overlapping_timer_runs_do_not_both_run(runtime: Runtime,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _log_events(runtime)
    inside, release = threading.Event(), threading.Event()
    real_train = train.train_default
    calls: list[str] = []

    def slow_train(*args, **kwargs):  # the first run waits here, holding the lease
        calls.append(threading.current_thread().name)
        inside.set()
        assert release.wait(60)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train, "train_default", slow_train)
    first: list = []
    worker = threading.Thread(target=lambda: first.extend(run_scheduled(runtime)), name="first")
    worker.start()
    assert inside.wait(60)

    (second,) = run_scheduled(runtime)  # the timer fires again while the first is training

    assert second.status == "skipped"
    assert "another retrain is running" in second.message
    release.set()
    worker.join(120)
    (done,) = first
    assert done.status == "published", done.message
    assert set(calls) == {"first"}  # the second run never reached training
    assert [d["id"] for d in version_docs(runtime.backends.store, TENANT)] == [done.version]
    assert active_version_id(runtime.backends.store, TENANT) == done.version
    (third,) = run_scheduled(runtime)  # the lease was released: the next run runs
    assert third.status in ("published", "rejected"), third.message


def test_an_expired_lease_is_taken_over_by_exactly_one_contender(runtime: Runtime) -> None:
    store = runtime.backends.store
    crashed = lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30, holder="crashed")
    assert crashed is not None
    assert lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30) is None  # still held
    doc = store.read(lease.LEASES, "lease|retrain", TENANT)
    assert doc is not None
    store.upsert(lease.LEASES, {**doc, "expires": (datetime.now(UTC)
                                                   - timedelta(seconds=1)).isoformat()})
    barrier = threading.Barrier(6)
    winners: list[lease.Lease] = []

    def contend(i: int) -> None:
        barrier.wait()
        got = lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30, holder=f"c{i}")
        if got is not None:
            winners.append(got)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(winners) == 1
    holder = lease.holder_of(store, "retrain", TENANT)
    assert holder is not None and holder["holder"] == winners[0].holder
    assert not lease.release(store, crashed)  # the crashed holder cannot release it any more
    assert lease.release(store, winners[0])
    assert lease.holder_of(store, "retrain", TENANT) is None


def test_a_run_longer_than_the_lease_keeps_it(runtime: Runtime) -> None:
    """The holder renews while the block runs: nobody takes over a live run's lease."""
    store = runtime.backends.store
    with lease.held(store, "retrain", TENANT, ttl_seconds=2) as mine:
        time.sleep(4.5)  # more than twice the lease
        assert lease.try_acquire(store, "retrain", TENANT, ttl_seconds=2) is None
        holder = lease.holder_of(store, "retrain", TENANT)
        assert holder is not None and holder["holder"] == mine.holder
    assert lease.holder_of(store, "retrain", TENANT) is None  # released at the end


def test_renewal_fails_once_the_lease_was_taken_over(runtime: Runtime) -> None:
    store = runtime.backends.store
    crashed = lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30, holder="crashed")
    assert crashed is not None and lease.renew(store, crashed, 30)
    doc = store.read(lease.LEASES, "lease|retrain", TENANT)
    assert doc is not None
    store.upsert(lease.LEASES, {**doc, "expires": (datetime.now(UTC)
                                                   - timedelta(seconds=1)).isoformat()})
    successor = lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30, holder="next")
    assert successor is not None
    assert not lease.renew(store, crashed, 30)  # the old holder cannot extend the new lease
    holder = lease.holder_of(store, "retrain", TENANT)
    assert holder is not None and holder["holder"] == "next"


def _expire(store: DocumentStore) -> None:
    """Backdates the lease document, as a holder whose renewals stopped leaves it."""
    doc = store.read(lease.LEASES, "lease|retrain", TENANT)
    assert doc is not None
    store.upsert(lease.LEASES, {**doc, "expires": (datetime.now(UTC)
                                                   - timedelta(seconds=1)).isoformat()})


@pytest.mark.parametrize("meanwhile", ["released and taken afresh", "renewed late"])
def test_a_takeover_never_writes_over_a_lease_that_changed_since_it_was_read_expired(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    """Between a contender's read of the expired lease and its takeover, the late holder may
    finish and release it (and another run take it), or renew it: the contender stays out."""
    store = runtime.backends.store
    late = lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30, holder="late")
    assert late is not None
    _expire(store)
    real_create = store.create
    fresh: list[lease.Lease | None] = []

    def interleaved(container: str, doc: dict[str, Any]) -> bool:
        if doc.get("kind") == "lease-takeover" and not fresh:  # after the contender's read
            if meanwhile == "renewed late":
                assert lease.renew(store, late, 30)
                fresh.append(late)
            else:
                assert lease.release(store, late)
                fresh.append(lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30,
                                               holder="fresh"))
        return real_create(container, doc)

    monkeypatch.setattr(store, "create", interleaved)
    contender = lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30, holder="contender")
    monkeypatch.undo()

    (holder,) = fresh
    assert holder is not None and contender is None
    assert lease.renew(store, holder, 30)  # still the only holder
    _expire(store)  # and once it expires in turn, it can be taken over
    successor = lease.try_acquire(store, "retrain", TENANT, ttl_seconds=30, holder="next")
    assert successor is not None and lease.release(store, successor)
