"""Feedback batches end to end: events store plus online state, on the embedded pair (SQLite +
in-process state) and on the Azure pair (the Cosmos-protocol server + a real redis-server).

The properties the trigger relies on: a re-delivered batch changes nothing, bad events are
dead-lettered one by one, and a batch that failed half-way and is re-run ends exactly where
one clean run ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import forgotten
from shared.feedback.process import BatchResult, process_batch
from shared.online_state import (
    MemoryOnlineState,
    OnlineConfig,
    OnlineState,
    OnlineUpdate,
    RedisOnlineState,
    UserState,
)
from shared.settings import Settings
from shared.stores.cache import LruCache
from shared.stores.documents import Document, DocumentStore, SqliteStore
from shared.stores.errors import BackendError
from shared.stores.factory import build_store
from tests import services

CONFIG = OnlineConfig(trending_read_cache_seconds=0)
TENANTS = ("shop", "news")
USERS = ("u1", "u2", "u3")
CATEGORIES = (None, "shoes", "hats")


@dataclass
class Env:
    store: DocumentStore
    online: OnlineState


EnvFactory = Callable[[], Env]


@pytest.fixture(params=["embedded", "azure"])
def new_env(request: pytest.FixtureRequest, tmp_path: Path) -> EnvFactory:
    """Builds a fresh, empty store + online state each call (Redis is flushed)."""
    if request.param == "embedded":
        def embedded() -> Env:
            path = tmp_path / f"{uuid.uuid4().hex}.sqlite3"
            return Env(SqliteStore(path), MemoryOnlineState(LruCache(), CONFIG))
        return embedded
    client: redis.Redis = request.getfixturevalue("redis_client")
    endpoint: str = request.getfixturevalue("cosmos_endpoint")

    def azure() -> Env:
        client.flushdb()
        store = build_store(Settings(
            COSMOS_ENDPOINT=endpoint, COSMOS_KEY=services.COSMOS_KEY,
            COSMOS_DATABASE=f"db{uuid.uuid4().hex[:12]}", COSMOS_CREATE_CONTAINERS=True,
            COSMOS_VERIFY_TLS=False,
        ))
        return Env(store, RedisOnlineState(client, CONFIG))
    return azure


def event(event_id: str, **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "eventId": event_id, "tenant": "shop", "userId": "u1", "itemId": "i1",
        "type": "click", "timestamp": datetime.now(UTC).isoformat(),
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def mixed_batch() -> list[bytes]:
    """Two tenants, three users, every event type, categories, a repeat and a bad event."""
    kinds = ["view", "click", "add_to_cart", "purchase", "rating", "dislike", "impression"]
    now = datetime.now(UTC)
    out = []
    for n in range(42):
        kind = kinds[n % len(kinds)]
        extra: dict[str, Any] = {}
        if kind == "rating":
            extra["value"] = 4
        if kind == "impression":
            extra["recommendationId"] = f"r{n}"
        category = CATEGORIES[n % 3]
        if category:
            extra["context"] = {"category": category}
        out.append(event(
            f"e{n}", tenant=TENANTS[n % 2], userId=USERS[n % 3], itemId=f"i{n % 5}", type=kind,
            timestamp=(now - timedelta(hours=n % 4, minutes=n)).isoformat(), **extra,
        ))
    out.append(out[3])  # the same event twice in one delivery
    out.append(b"{not json")
    return out


def snapshot(env: Env) -> dict[str, Any]:
    """Everything a batch can change, in comparable form."""
    events = sorted((d["pk"], d["id"], json.dumps(d, sort_keys=True))
                    for d in env.store.scan("events"))
    dead = sorted((d["id"], d["reason"]) for d in env.store.scan("deadletters"))
    users = {(t, u): env.online.read_user(t, u) for t in TENANTS for u in USERS}
    trending = {(t, c): [(i, round(s, 9)) for i, s in env.online.trending(t, 100, c)]
                for t in TENANTS for c in CATEGORIES}
    return {"events": events, "dead": dead, "users": users, "trending": trending}


def test_the_same_batch_delivered_twice_leaves_every_count_as_after_one(
    new_env: EnvFactory,
) -> None:
    env = new_env()
    batch = mixed_batch()
    first = process_batch(env.store, batch, env.online)
    after_one = snapshot(env)
    second = process_batch(env.store, batch, env.online)
    assert snapshot(env) == after_one
    assert (first.accepted, first.duplicates, len(first.rejected)) == (42, 1, 1)
    assert (second.accepted, second.duplicates, second.online_applied) == (0, 43, 0)
    assert first.online_applied == 36  # 42 events less the 6 impressions
    assert len(after_one["events"]) == 42 and len(after_one["dead"]) == 1
    # and the state is what the events say: trending counts every non-impression event once
    assert sum(s for _, s in after_one["trending"][("shop", None)]) > 0
    assert any(state.purchased for state in after_one["users"].values())


def test_bad_events_are_dead_lettered_with_reasons_and_the_rest_applied(
    new_env: EnvFactory,
) -> None:
    env = new_env()
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    bad = {
        b"{not json": "not valid JSON",
        b"[1, 2]": "must be a JSON object",
        event("bad-type", type="teleport"): "type: Input should be",
        event("no-user", userId=None): "userId: is required",
        event("", itemId="i2"): "eventId: must be 1-128 characters",
        json.dumps({"tenant": "shop", "userId": "u1", "itemId": "i1", "type": "view",
                    "timestamp": "2024-01-01T00:00:00Z"}).encode(): "eventId: is required",
        event("later", timestamp=future): "more than 10 minutes in the future",
        event("big", context={"pad": "x" * 20_000}): "over the 16384-byte limit",
        event("stars", type="rating"): "a rating event needs a numeric 'value'",
        event("extra", colour="red"): "colour: is not a known field",
    }
    good = [event("ok1", itemId="i1", type="purchase"), event("ok2", itemId="i2", type="view")]
    batch = [good[0], *bad, good[1]]
    result = process_batch(env.store, batch, env.online)

    assert (result.accepted, result.online_applied, len(result.rejected)) == (2, 2, len(bad))
    dead = {d["body"][:40]: d for d in env.store.scan("deadletters")}
    assert len(dead) == len(bad)
    for body, fragment in bad.items():
        doc = dead[body.decode()[:40]]
        assert fragment in doc["reason"], (fragment, doc["reason"])
        assert doc["bodyBytes"] == len(body) and doc["received"]
        assert "Traceback" not in doc["reason"] and "pydantic" not in doc["reason"]
    assert dead[bad_key(bad, "big")]["truncated"] is False  # 20 KB is kept whole
    assert sorted(d["id"] for d in env.store.scan("events")) == ["ok1", "ok2"]
    state = env.online.read_user("shop", "u1")
    assert (state.purchased, state.seen, state.recent) == ({"i1"}, {"i2"}, ["i2", "i1"])


def bad_key(bad: dict[bytes, str], event_id: str) -> str:
    return next(b.decode()[:40] for b in bad if f'"{event_id}"' in b.decode())


class StoreFailingAfter:
    """The real store, which raises once `n` events have been created (a store outage)."""

    def __init__(self, store: DocumentStore, n: int) -> None:
        self._store = store
        self._left = n
        self.name = store.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def create_many(self, container: str, docs: Iterable[Document]) -> int:
        batch = list(docs)
        done = sum(1 for d in batch[: self._left] if self._store.create(container, d))
        if len(batch) > self._left:
            raise BackendError("store went away")
        return done


class OnlineFailingAfter:
    """The real online state, which applies the first `n` updates and then fails."""

    def __init__(self, online: OnlineState, n: int) -> None:
        self._online = online
        self._n = n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._online, name)

    def apply(self, updates: Sequence[OnlineUpdate]) -> int:
        self._online.apply(updates[: self._n])
        raise BackendError("redis went away")


def _clean_run(new_env: EnvFactory, batch: list[bytes]) -> dict[str, Any]:
    env = new_env()
    process_batch(env.store, batch, env.online)
    return snapshot(env)


@pytest.mark.parametrize("fail_at", ["store", "online"])
def test_a_run_that_failed_half_way_and_is_rerun_ends_as_one_clean_run(
    new_env: EnvFactory, fail_at: str,
) -> None:
    batch = mixed_batch()
    expected = _clean_run(new_env, batch)

    env = new_env()
    store: Any = StoreFailingAfter(env.store, 17) if fail_at == "store" else env.store
    online: Any = OnlineFailingAfter(env.online, 17) if fail_at == "online" else env.online
    with pytest.raises(BackendError):
        process_batch(store, batch, online)
    partial = snapshot(env)
    assert partial != expected  # the failure really left the state half-done
    rerun: BatchResult = process_batch(env.store, batch, env.online)
    assert snapshot(env) == expected
    assert rerun.online_applied == (36 if fail_at == "store" else 36 - 17)
    if fail_at == "online":  # stored by the failed attempt, applied now: they count now
        assert (rerun.accepted, rerun.duplicates) == (19, len(batch) - 1 - 19)


def test_lost_redis_reply_after_the_scripts_ran_is_safe_to_rerun(
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    """The worst at-least-once case: Redis applied the batch but the reply never arrived."""
    batch = mixed_batch()
    online = RedisOnlineState(redis_client, CONFIG)
    clean = Env(SqliteStore(tmp_path / "clean.sqlite3"), online)
    process_batch(clean.store, batch, online)
    expected = snapshot(clean)
    redis_client.flushdb()

    env = Env(SqliteStore(tmp_path / "flaky.sqlite3"), online)
    real_run = online._run

    def run_then_drop(calls: Any) -> list[Any]:
        real_run(calls)
        raise redis.ConnectionError("connection reset by peer")

    online._run = run_then_drop  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="connection reset"):
        process_batch(env.store, batch, online)
    del online._run
    assert process_batch(env.store, batch, online).online_applied == 0
    assert snapshot(env) == expected


def test_users_state_and_trending_follow_the_events(new_env: EnvFactory) -> None:
    env = new_env()
    # all in the current hour's bucket (no decay), whatever the minute the test runs at
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    batch = [
        event("a", itemId="shoe1", type="view", context={"category": "shoes"},
              timestamp=(hour + timedelta(seconds=1)).isoformat()),
        event("b", itemId="shoe1", type="purchase", context={"category": "shoes"},
              timestamp=(hour + timedelta(seconds=2)).isoformat()),
        event("c", itemId="hat1", type="click", context={"category": "hats"},
              timestamp=(hour + timedelta(seconds=3)).isoformat()),
        event("d", itemId="bad", type="dislike"),
        event("e", itemId="shown", type="impression", recommendationId="r1"),
    ]
    process_batch(env.store, batch, env.online)
    state = env.online.read_user("shop", "u1")
    assert state == UserState(recent=["hat1", "shoe1"], seen=frozenset({"shoe1", "hat1"}),
                              purchased=frozenset({"shoe1"}), disliked=frozenset({"bad"}))
    assert env.online.trending("shop", 5) == [("shoe1", 6.0), ("hat1", 2.0)]
    assert env.online.trending("shop", 5, "hats") == [("hat1", 2.0)]
    assert env.online.trending("news", 5) == []


def test_two_users_events_with_the_same_id_are_both_applied(new_env: EnvFactory) -> None:
    """Event ids are unique per user (per-device counters are common): the store keys them
    within the user's partition, and so must the batch and the Redis markers."""
    env = new_env()
    alice = event("1", userId="alice", itemId="a1", type="purchase")
    bob = event("1", userId="bob", itemId="b1", type="purchase")
    result = process_batch(env.store, [alice, bob], env.online)
    assert (result.accepted, result.duplicates) == (2, 0)
    assert env.online.read_user("shop", "bob").purchased == frozenset({"b1"})
    later = event("1", userId="carol", itemId="c1", type="purchase")
    process_batch(env.store, [later], env.online)
    assert env.online.read_user("shop", "carol").purchased == frozenset({"c1"})


def test_events_sent_before_a_deletion_and_processed_after_it_are_dropped(
    new_env: EnvFactory,
) -> None:
    """Event Hubs delivers late: what the user sent before DELETE /api/users must not be
    stored or applied when it arrives after it; what they send afterwards counts."""
    env = new_env()
    deleted = datetime.now(UTC) - timedelta(minutes=20)
    sent = deleted - timedelta(minutes=5)
    env.online.mark_forgotten("shop", "u1", deleted.timestamp())
    fast_clock = (deleted + timedelta(minutes=5)).isoformat()  # sent before, a device ahead
    later = datetime.now(UTC).isoformat()  # after the deletion and any clock skew
    result = process_batch(env.store, [
        event("old1", timestamp=sent.isoformat(), type="purchase"),
        event("old2", timestamp=sent.isoformat(), itemId="i2"),
        event("skewed", timestamp=fast_clock, itemId="i4"),
        event("other", userId="u2", timestamp=sent.isoformat()),
        event("new", timestamp=later, itemId="i3"),
    ], env.online)
    assert (result.forgotten, result.accepted, result.duplicates) == (3, 2, 0)
    assert sorted(d["id"] for d in env.store.query_partition("events", "shop|u1")) == ["new"]
    state = env.online.read_user("shop", "u1")
    assert state.recent == ["i3"] and state.purchased == frozenset()
    assert env.online.read_user("shop", "u2").recent == ["i1"]


def test_an_old_event_arriving_after_a_returning_users_new_ones_leaves_their_new_state(
    new_env: EnvFactory,
) -> None:
    """The user came back after the deletion; an event from before it arrives later still:
    it is dropped, and what they did since stays (it once cleared their whole state)."""
    env = new_env()
    deleted = datetime.now(UTC) - timedelta(minutes=20)
    env.online.mark_forgotten("shop", "u1", deleted.timestamp())
    process_batch(env.store, [event("new", itemId="i3", type="purchase")], env.online)
    sent = (deleted - timedelta(minutes=5)).isoformat()
    late = process_batch(env.store, [event("old", timestamp=sent, itemId="i9")], env.online)
    assert (late.forgotten, late.accepted) == (1, 0)
    state = env.online.read_user("shop", "u1")
    assert state.recent == ["i3"] and state.purchased == frozenset({"i3"})
    assert [d["id"] for d in env.store.query_partition("events", "shop|u1")] == ["new"]


def test_a_deletion_during_the_batch_leaves_none_of_the_users_events(
    new_env: EnvFactory,
) -> None:
    """The deletion lands after the batch checked the marks and before its writes: the
    check after the writes finds the mark and removes them."""
    env = new_env()
    real_apply = env.online.apply

    def deleted_meanwhile(updates: Sequence[OnlineUpdate]) -> int:
        # as DELETE /api/users does: mark, then delete what is stored (here: nothing yet
        # of this batch's events is visible to it, the batch's writes race it)
        env.online.mark_forgotten("shop", "u1", datetime.now(UTC).timestamp())
        return real_apply(updates)

    env.online.apply = deleted_meanwhile  # type: ignore[method-assign]
    sent = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    result = process_batch(env.store, [
        event("a", timestamp=sent, type="purchase"),
        event("b", userId="u2", timestamp=sent),
    ], env.online)
    assert result.forgotten == 1
    assert env.store.query_partition("events", "shop|u1") == []
    assert env.online.read_user("shop", "u1") == UserState()
    assert [d["id"] for d in env.store.query_partition("events", "shop|u2")] == ["b"]
    assert env.online.read_user("shop", "u2").recent == ["i1"]


def test_a_deletion_between_a_failed_attempt_and_its_retry_leaves_none_of_the_users_events(
    new_env: EnvFactory,
) -> None:
    """The failed attempt wrote u1's event; the retry finds the deletion mark and must remove
    what that attempt left, not only skip writing it again."""
    env = new_env()
    sent = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    batch = [event("a", timestamp=sent, type="purchase"), event("b", userId="u2", timestamp=sent)]
    with pytest.raises(BackendError):
        process_batch(env.store, batch, OnlineFailingAfter(env.online, 0))
    assert [d["id"] for d in env.store.query_partition("events", "shop|u1")] == ["a"]
    env.online.mark_forgotten("shop", "u1", datetime.now(UTC).timestamp())  # DELETE /api/users

    retry = process_batch(env.store, batch, env.online)

    assert retry.forgotten == 1
    assert env.store.query_partition("events", "shop|u1") == []
    assert env.online.read_user("shop", "u1") == UserState()
    assert env.online.read_user("shop", "u2").recent == ["i1"]


def test_bad_events_of_a_user_deleted_after_sending_them_are_not_dead_lettered(
    new_env: EnvFactory,
) -> None:
    env = new_env()
    deleted = datetime.now(UTC) - timedelta(minutes=20)
    sent = (deleted - timedelta(minutes=5)).isoformat()
    env.online.mark_forgotten("shop", "u1", deleted.timestamp())
    later = datetime.now(UTC).isoformat()
    process_batch(env.store, [
        event("old", timestamp=sent, type="teleport"),
        event("no-time", timestamp="yesterday", type="teleport"),
        event("new", timestamp=later, type="teleport"),  # sent after: a new user's
        event("other", userId="u2", timestamp=sent, type="teleport"),
    ], env.online)
    kept = sorted((d["userId"], json.loads(d["body"])["eventId"])
                  for d in env.store.scan("deadletters"))
    assert kept == [("u1", "new"), ("u2", "other")]


def test_events_replayed_after_the_deletion_mark_lapsed_stay_forgotten(
    new_env: EnvFactory,
) -> None:
    """The Redis mark lives as long as Event Hubs keeps an event (7 days), but an export
    replayed later (replay-events) still holds the user's old events: they were stored and
    applied again, bringing back a user deleted more than 7 days before. The deletion's
    record in the store (kept for good) now drops them; what the user sent after it counts."""
    env = new_env()
    now = datetime.now(UTC)
    deleted = now - timedelta(days=8)
    forgotten.record(env.store, "shop", "u1", at=deleted)  # its Redis mark has lapsed
    sent = (deleted - timedelta(days=1)).isoformat()
    returned = (now - timedelta(days=2)).isoformat()
    result = process_batch(env.store, [
        event("old", timestamp=sent, type="purchase"),
        event("bad", timestamp=sent, type="teleport"),
        event("other", userId="u2", timestamp=sent),
        event("new", timestamp=returned, itemId="i3"),
    ], env.online)
    assert (result.forgotten, result.accepted) == (1, 2)
    assert [d["id"] for d in env.store.query_partition("events", "shop|u1")] == ["new"]
    assert env.online.read_user("shop", "u1").purchased == frozenset()
    assert env.online.read_user("shop", "u1").recent == ["i3"]
    assert [d["id"] for d in env.store.query_partition("events", "shop|u2")] == ["other"]
    assert list(env.store.scan("deadletters")) == []
