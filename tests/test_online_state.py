"""The online-state contract, on a real redis-server and in process memory alike."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from shared.online_state import (
    HOUR,
    MemoryOnlineState,
    OnlineConfig,
    OnlineState,
    OnlineUpdate,
    RedisOnlineState,
    build_online_state,
    ranking_resp,
    user_state_keys,
)
from shared.stores.cache import AsyncRedis, LruCache, RedisCache, _pack
from shared.stores.errors import BackendError

CONFIG = OnlineConfig(recent_limit=3, trending_read_cache_seconds=0)


@pytest.fixture(params=["memory", "redis"])
def online(request: pytest.FixtureRequest) -> OnlineState:
    if request.param == "memory":
        return MemoryOnlineState(LruCache(), CONFIG)
    client: redis.Redis = request.getfixturevalue("redis_client")
    return RedisOnlineState(client, CONFIG)


def _u(event_id: str, item: str, user: str = "u1", tenant: str = "t1", *, ago: float = 0,
       kind: str = "click", category: str | None = None) -> OnlineUpdate:
    effects = {"click": (True, "seen", 2.0), "purchase": (True, "purchased", 5.0),
               "dislike": (False, "disliked", 0.0)}
    recent, user_set, weight = effects[kind]
    return OnlineUpdate(tenant, event_id, user, item, time.time() - ago, recent, user_set,
                        weight, category)


def test_user_state_records_recent_items_bounded_and_the_sets(online: OnlineState) -> None:
    online.apply([
        _u("e1", "a", ago=50), _u("e2", "b", ago=40), _u("e3", "c", ago=30),
        _u("e4", "d", ago=20, kind="purchase"), _u("e5", "x", kind="dislike"),
    ])
    state = online.read_user("t1", "u1")
    assert state.recent == ["d", "c", "b"]  # most recent first, oldest trimmed at the limit
    assert state.seen == {"a", "b", "c"}
    assert state.purchased == {"d"}
    assert state.disliked == {"x"}
    assert state.excluded == {"d", "x"}
    assert online.read_user("t2", "u1").recent == []  # tenants do not share state


@pytest.fixture(params=["memory", "redis"])
def capped(request: pytest.FixtureRequest) -> OnlineState:
    """Online state that keeps at most 3 items in each of seen / purchased / disliked."""
    config = OnlineConfig(recent_limit=10, hidden_limit=3, trending_read_cache_seconds=0)
    if request.param == "memory":
        return MemoryOnlineState(LruCache(), config)
    return RedisOnlineState(request.getfixturevalue("redis_client"), config)


def test_each_hidden_set_keeps_only_its_newest_items_up_to_the_limit(
    capped: OnlineState,
) -> None:
    capped.apply([_u("e1", "a", ago=50), _u("e2", "b", ago=40), _u("e3", "c", ago=30)])
    capped.apply([_u("e4", "d", ago=20)])  # a is the oldest: dropped
    capped.apply([_u("e5", "b", ago=5)])  # seen again: b is now the newest
    capped.apply([_u("e6", "e", ago=10)])  # c is the oldest now
    capped.apply([_u("e7", "z", ago=90)])  # arrives late: older than all, never kept
    capped.apply([_u(f"p{i}", f"p{i}", ago=10 - i, kind="purchase") for i in range(5)])
    capped.apply([_u("x1", "x", kind="dislike")])
    state = capped.read_user("t1", "u1")
    assert state.seen == {"d", "e", "b"}
    assert state.purchased == {"p2", "p3", "p4"}
    assert state.disliked == {"x"}
    ranking, _ = capped.read_ranking_with("t1", "u1", "missing")
    assert ranking.hidden == state.seen | state.excluded


def test_plain_sets_from_before_the_cap_are_read_and_become_capped_on_the_next_event(
    redis_client: redis.Redis,
) -> None:
    """An earlier version kept seen / purchased / disliked as plain sets: requests still read
    them, and the user's next event converts the set it writes, its old items as the oldest."""
    online = RedisOnlineState(redis_client, OnlineConfig(hidden_limit=2))
    keys = user_state_keys("t1", "u1")
    redis_client.sadd(keys["seen"], "a", "b")
    redis_client.sadd(keys["purchased"], "p")
    assert online.read_user("t1", "u1").seen == {"a", "b"}
    assert online.read_ranking_with("t1", "u1", "missing")[0].hidden == {"a", "b", "p"}
    online.apply([_u("e1", "c")])
    assert redis_client.type(keys["seen"]) == b"zset"
    assert redis_client.ttl(keys["seen"]) > 0
    state = online.read_user("t1", "u1")
    assert state.seen == {"b", "c"}  # a and b tied as the oldest: the smaller id went first
    assert (state.purchased, redis_client.type(keys["purchased"])) == ({"p"}, b"set")
    assert online.read_ranking_with("t1", "u1", "missing")[0].hidden == {"b", "c", "p"}
    online.apply([_u("e2", "q", kind="purchase")])
    assert redis_client.type(keys["purchased"]) == b"zset"
    assert online.read_user("t1", "u1").purchased == {"p", "q"}


def test_each_event_id_is_applied_once(online: OnlineState) -> None:
    batch = [_u("e1", "a"), _u("e2", "a", user="u2"), _u("e3", "b", kind="purchase")]
    assert online.apply(batch) == 3
    before = (online.read_user("t1", "u1"), online.trending("t1", 10))
    assert online.apply(batch) == 0
    assert online.apply([*batch, _u("e4", "c")]) == 1
    assert online.read_user("t1", "u1").recent[1:] == before[0].recent
    assert dict(online.trending("t1", 10)) == {**dict(before[1]), "c": 2.0}


def test_trending_decays_with_age_and_is_kept_per_category(online: OnlineState) -> None:
    online.apply([
        _u("e1", "old", ago=12 * HOUR + 60, kind="purchase", category="shoes"),
        _u("e2", "new", ago=0, kind="click", category="hats"),
        _u("e3", "ancient", ago=49 * HOUR, kind="purchase"),  # outside the 48 h window
    ])
    top = dict(online.trending("t1", 10))
    assert top["new"] == pytest.approx(2.0)
    # 12 (or 13) hours old, half-life 6 h: 5 * 0.25 (or 0.21)
    assert 5 * 0.5 ** (13 / 6) <= top["old"] <= 5 * 0.5 ** (12 / 6) + 1e-9
    assert "ancient" not in top
    assert [i for i, _ in online.trending("t1", 10, category="shoes")] == ["old"]
    assert [i for i, _ in online.trending("t1", 1)] == ["new"]


def test_an_event_stamped_in_the_next_hour_within_the_clock_skew_trends_at_once(
    online: OnlineState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two minutes before the hour, a purchase from a device clock five minutes fast (the
    schema accepts ten) lands in the next hour's bucket: it counts now, not from the hour."""
    now = (time.time() // HOUR + 1) * HOUR - 120
    monkeypatch.setattr("shared.online_state.time.time", lambda: now)
    online.apply([
        OnlineUpdate("t1", "e1", "u1", "ahead", now + 300, trend_weight=5.0, category="hats"),
        OnlineUpdate("t1", "e2", "u2", "now", now, trend_weight=2.0, category="hats"),
    ])
    assert online.trending("t1", 10) == [("ahead", 5.0), ("now", 2.0)]
    assert online.trending("t1", 10, category="hats") == [("ahead", 5.0), ("now", 2.0)]
    monkeypatch.setattr("shared.online_state.time.time", lambda: now + 180)  # its hour began
    top = dict(online.trending("t1", 10))
    assert top["ahead"] == pytest.approx(5.0) and top["now"] < 2.0


def test_read_ranking_with_returns_the_cached_candidates_too() -> None:
    lru = LruCache()
    lru.set_many({"reco:t1:v1:u:u1": b"candidates"})
    state = MemoryOnlineState(lru, CONFIG)
    state.apply([_u("e1", "a", kind="purchase")])
    ranking, extra = state.read_ranking_with("t1", "u1", "reco:t1:v1:u:u1")
    assert (ranking.hidden, extra) == ({"a"}, b"candidates")
    assert state.read_ranking_with("t1", "u1", "missing")[1] is None


def test_the_ranking_read_unites_the_user_sets_and_keeps_recent_order(
    online: OnlineState,
) -> None:
    online.apply([
        _u("e1", "a", ago=50), _u("e2", "b", ago=40), _u("e3", "c", ago=30),
        _u("e4", "d", ago=20, kind="purchase"), _u("e5", "x", kind="dislike"),
    ])
    full = online.read_user("t1", "u1")
    ranking, extra = online.read_ranking_with("t1", "u1", "reco:t1:v1:u:u1")
    assert ranking.recent == full.recent == ["d", "c", "b"]
    assert ranking.hidden == full.seen | full.excluded == {"a", "b", "c", "d", "x"}
    assert extra is None
    nobody, _ = online.read_ranking_with("t1", "nobody", "missing")
    assert (nobody.recent, nobody.hidden) == ([], frozenset())


def test_redis_read_ranking_with_is_one_round_trip_over_the_cache_client(
    redis_client: redis.Redis,
) -> None:
    cache = RedisCache(redis_client)
    cache.set_many({"reco:t1:v1:u:u1": b"candidates"})
    online = build_online_state(cache, CONFIG)
    assert isinstance(online, RedisOnlineState) and online.client is redis_client
    online.apply([_u("e1", "a", kind="purchase")])
    calls: list[int] = []
    original = redis_client.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    redis_client.pipeline = counting_pipeline  # type: ignore[method-assign]
    try:
        ranking, extra = online.read_ranking_with("t1", "u1", "reco:t1:v1:u:u1")
    finally:
        del redis_client.pipeline
    assert (ranking.hidden, extra, len(calls)) == ({"a"}, b"candidates", 1)


def test_all_keys_of_a_tenant_live_in_one_cluster_slot(redis_client: redis.Redis) -> None:
    online = RedisOnlineState(redis_client, CONFIG)
    online.apply([_u(f"e{i}", f"i{i}", user=f"u{i % 3}", category="c1", kind=k)
                  for i, k in enumerate(["click", "purchase", "dislike"] * 3)])
    online.trending("t1", 5)
    keys = [k.decode() for k in redis_client.scan_iter("os:*")]
    assert len(keys) > 10
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"{t:t1}")}


def test_applies_again_after_the_server_forgets_the_script(redis_client: redis.Redis) -> None:
    online = RedisOnlineState(redis_client, CONFIG)
    online.apply([_u("e1", "a")])
    redis_client.script_flush()
    assert online.apply([_u("e2", "b"), _u("e3", "c", tenant="t2")]) == 2
    assert online.read_user("t1", "u1").recent == ["b", "a"]


def test_an_update_after_redis_closed_the_connection_applies_once(
    redis_client: redis.Redis,
) -> None:
    """The pooled connection a batch finds may be dead (a Redis restart, an idle timeout):
    the batch goes again on a fresh one instead of failing."""
    online = RedisOnlineState(redis_client, CONFIG)
    online.apply([_u("e1", "a")])
    killer = redis.Redis(port=redis_client.connection_pool.connection_kwargs["port"])
    assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
    assert online.apply([_u("e2", "b"), _u("e1", "a")]) == 1
    assert online.forgotten_marks([("t1", "u1")]) == {}
    assert online.read_user("t1", "u1").recent == ["b", "a"]


def test_marker_and_user_keys_expire(redis_client: redis.Redis) -> None:
    online = RedisOnlineState(redis_client, CONFIG)
    online.apply([_u("e1", "a", category="c1")])
    for key in redis_client.scan_iter("os:*"):
        assert 0 < redis_client.ttl(key) <= CONFIG.user_ttl_seconds, key


def test_any_event_of_a_user_renews_all_their_keys(redis_client: redis.Redis) -> None:
    """State expires after the user's inactivity: a view must keep their purchases (the
    in-memory state always did; Redis renewed only the key an event wrote to)."""
    online = RedisOnlineState(redis_client, CONFIG)
    online.apply([_u("e1", "a", kind="purchase"), _u("e2", "b", kind="dislike")])
    keys = user_state_keys("t1", "u1")
    for role in ("purchased", "disliked"):
        redis_client.expire(keys[role], 5)  # as if bought and disliked long ago
    online.apply([_u("e3", "c")])
    for role in ("recent", "seen", "purchased", "disliked"):
        assert redis_client.ttl(keys[role]) > CONFIG.user_ttl_seconds - 60, role
    assert online.read_user("t1", "u1").purchased == frozenset({"a"})


def test_applied_any_says_whether_one_of_the_users_events_was_applied(
    online: OnlineState,
) -> None:
    online.apply([_u("e1", "a"), _u("e2", "b", user="u2")])
    assert online.applied_any("t1", "u1", ["x", "e1"])
    assert not online.applied_any("t1", "u1", ["x", "e2"])  # e2 is u2's
    assert not online.applied_any("t2", "u1", ["e1"])
    assert not online.applied_any("t1", "u1", [])
    online.forget_user("t1", "u1")
    assert not online.applied_any("t1", "u1", ["e1"])


def test_forget_user_removes_their_state(online: OnlineState,
                                         request: pytest.FixtureRequest) -> None:
    online.apply([_u("e1", "a"), _u("e2", "b", kind="purchase"), _u("e3", "c", user="u2")])
    assert online.forget_user("t1", "u1") == 4  # recent, seen, purchased, applied marks
    assert online.read_user("t1", "u1").recent == []
    assert online.read_user("t1", "u2").recent == ["c"]
    assert online.forget_user("t1", "u1") == 0
    if isinstance(online, RedisOnlineState):  # nothing named after the user is left
        client = request.getfixturevalue("redis_client")
        assert not [k for k in client.scan_iter("os:*") if b":u1:" in k]
    # the marks went too: the same event, delivered again, applies again
    assert online.apply([_u("e1", "a")]) == 1
    assert online.apply([_u("e3", "c", user="u2")]) == 0  # u2's marks stay


def test_forgotten_marks_outlive_forget_user_and_name_only_deleted_users(
    online: OnlineState,
) -> None:
    online.apply([_u("e1", "a")])
    online.mark_forgotten("t1", "u1", 1000.5)
    assert online.forget_user("t1", "u1") == 3  # recent, seen and marks; not the mark
    assert online.forgotten_marks([("t1", "u1"), ("t1", "u2"), ("t2", "u1"), ("t1", "u1")]) \
        == {("t1", "u1"): 1000.5}
    online.mark_forgotten("t1", "u1", 2000.0)  # a retried deletion: the latest time counts
    online.mark_forgotten("t2", "u3", 3000.0)
    assert online.forgotten_marks([("t1", "u1"), ("t2", "u1"), ("t2", "u3")]) == {
        ("t1", "u1"): 2000.0, ("t2", "u3"): 3000.0}
    assert online.forgotten_marks([]) == {}


def test_an_unreachable_redis_raises_backend_error_and_pings_false() -> None:
    client = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    online = RedisOnlineState(client, CONFIG)
    assert online.ping() is False
    with pytest.raises(BackendError):
        online.apply([_u("e1", "a")])
    with pytest.raises(BackendError):
        online.read_user("t1", "u1")


def test_dedupe_ttl_must_cover_the_trending_window_and_the_clock_skew() -> None:
    """An event stamped 10 minutes ahead stays in the window 10 minutes longer than a marker
    living exactly the window: a replay then would count it in trending twice."""
    for ttl in (HOUR, 48 * HOUR):
        with pytest.raises(ValueError, match="DEDUPE_TTL_SECONDS must cover RECO_TRENDING_WIN"):
            OnlineConfig(dedupe_ttl_seconds=ttl, trending_window_hours=48)
    assert OnlineConfig(dedupe_ttl_seconds=48 * HOUR + 600, trending_window_hours=48)


def test_the_async_ranking_read_sends_what_the_sync_read_sends_and_reads_the_same(
    redis_client: redis.Redis, redis_port: int,
) -> None:
    """The request path packs its three commands from a template: byte for byte what the
    generic packer makes of `_ranking_commands` (non-ASCII ids included), and on a real Redis
    the same answer as the pipelined sync read."""
    for tenant, user, key in [("t1", "u1", "reco:t1:v1:u:u1"), ("tén", "ü-9", "reco:x:é")]:
        commands = RedisOnlineState._ranking_commands(tenant, user, key)
        assert ranking_resp(tenant, user, key) == _pack(commands)
    cache = RedisCache(redis_client)
    cache.set_many({"reco:t1:v1:u:u1": b"candidates"})
    aio = AsyncRedis(lambda: aredis.BlockingConnectionPool(port=redis_port, max_connections=2))
    online = RedisOnlineState(redis_client, CONFIG, aio)
    online.apply([_u("e1", "a", ago=30), _u("e2", "b", ago=20, kind="purchase"),
                  _u("e3", "x", kind="dislike")])
    for user, key in [("u1", "reco:t1:v1:u:u1"), ("nobody", "missing")]:
        assert asyncio.run(online.read_ranking_with_async("t1", user, key)) == \
            online.read_ranking_with("t1", user, key)
    ranking, extra = online.read_ranking_with("t1", "u1", "reco:t1:v1:u:u1")
    assert (ranking.recent, ranking.hidden, extra) == (["b", "a"], {"a", "b", "x"}, b"candidates")
