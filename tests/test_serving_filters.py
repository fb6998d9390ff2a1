"""Filters, exclusions, rules, diversity, experiments and tenant isolation on real Redis, the
Cosmos-protocol server and Azurite."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
import redis

from shared.keys import candidates_cache_key
from shared.online_state import OnlineUpdate
from shared.serving.experiments import bucket
from tests.helpers import client_for, tiny_interactions
from tests.test_serving_support import (
    azure_runtime,
    categories_of,
    make_catalogue,
    popularity_reranker,
    publish_catalogue,
)
from training.retrain import train_and_publish


@pytest.fixture
def catalogue(redis_client, cosmos_endpoint: str, azurite_connection: str):
    return make_catalogue(redis_client, cosmos_endpoint, azurite_connection)


def ids(body: dict) -> list[str]:
    return [i["itemId"] for i in body["items"]]


def test_category_filter_keeps_only_items_in_any_requested_category(catalogue) -> None:
    runtime, _ = catalogue
    body = client_for(runtime).get(
        "/api/recommendations/u1?k=12&category=music&category=games"
    ).json()
    got = ids(body)
    assert len(got) == 12
    assert all({"music", "games"} & set(categories_of(i)) for i in got)
    assert got[:2] == ["i05", "i10"]  # i05 is books+music: it passes


def test_excluded_items_never_come_back(catalogue) -> None:
    runtime, _ = catalogue
    client = client_for(runtime)
    body = client.get("/api/recommendations/u1?k=5&exclude=i00&exclude=i01,i02").json()
    assert ids(body) == ["i03", "i04", "i05", "i06", "i07"]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]


def test_diversity_caps_each_category_share_of_the_top_k(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_DIVERSITY_MAX_SHARE=0.4)
    publish_catalogue(runtime)
    got = ids(client_for(runtime).get("/api/recommendations/u1?k=10").json())
    counts = Counter(c for i in got for c in categories_of(i))
    assert len(got) == 10
    assert max(counts.values()) <= 4
    assert got[:4] == ["i00", "i01", "i02", "i03"]  # best items kept, later books skipped


def test_without_diversity_the_top_k_is_one_category(catalogue) -> None:
    runtime, _ = catalogue
    got = ids(client_for(runtime).get("/api/recommendations/u1?k=10").json())
    assert got == [f"i{n:02d}" for n in range(10)]


def test_tenants_are_isolated(redis_client: redis.Redis, cosmos_endpoint: str,
                              azurite_connection: str) -> None:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    a = publish_catalogue(runtime, tenant="shopa", users=["u1"])
    b = train_and_publish(runtime, tiny_interactions(), "shopb").version
    client = client_for(runtime)
    body_a = client.get("/api/recommendations/u1?tenant=shopa").json()
    body_b = client.get("/api/recommendations/u1", headers={"x-tenant": "shopb"}).json()
    assert (body_a["tenant"], body_a["modelVersion"], body_a["source"]) == ("shopa", a, "cache")
    assert (body_b["tenant"], body_b["modelVersion"], body_b["source"]) == ("shopb", b, "cache")
    assert set(ids(body_a)) <= {f"i{n:02d}" for n in range(30)}
    assert set(ids(body_b)) <= set("abcde")
    # the keys are tenant-scoped, and a user only known to shopb is a stranger in shopa
    assert redis_client.exists(candidates_cache_key("shopa", a, "u1"))
    assert not redis_client.exists(candidates_cache_key("shopb", a, "u1"))
    assert client.get("/api/recommendations/u4?tenant=shopa").json()["source"] == "cold_start"
    missing = client.get("/api/recommendations/u1?tenant=shopc")
    assert missing.status_code == 404 and "shopc" in missing.json()["error"]
    # forgetting a user in one tenant leaves the other tenant's data alone
    client.delete("/api/users/u1?tenant=shopa")
    assert client.get("/api/recommendations/u1?tenant=shopb").json()["source"] == "cache"


def test_pinned_blocked_and_boosted_items_follow_the_tenant_rules(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    rules = {"default": {"pinned": [{"itemId": "i29", "position": 1}],
                         "blocked": ["i01"], "boost": {"i09": 100.0}},
             "other": {"pinned": [{"itemId": "i28", "position": 2}]}}
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_RULES=json.dumps(rules), RECO_DIVERSITY_MAX_SHARE=1.0)
    publish_catalogue(runtime)
    got = ids(client_for(runtime).get("/api/recommendations/u1?k=5").json())
    assert got == ["i29", "i09", "i00", "i02", "i03"]
    # a pin never shows what the request excludes
    got = ids(client_for(runtime).get("/api/recommendations/u1?k=5&exclude=i29").json())
    assert "i29" not in got and got[0] == "i09"


def test_experiment_variant_is_stable_and_in_the_answer(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    experiments = [{"name": "div", "variants": [
        {"name": "control", "share": 0.5},
        {"name": "diverse", "share": 0.5, "diversity": 0.4},
    ]}]
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_EXPERIMENTS=json.dumps(experiments),
                            RECO_DIVERSITY_MAX_SHARE=1.0)
    users = [f"u{n}" for n in range(20)]
    publish_catalogue(runtime, users=users)
    client = client_for(runtime)
    seen = {}
    for user in users:
        body = client.get(f"/api/recommendations/{user}?k=10").json()
        expected = "control" if bucket("default", "div", user) < 0.5 else "diverse"
        assert (body["experiment"], body["variant"]) == ("div", expected)
        counts = Counter(c for i in ids(body) for c in categories_of(i))
        assert (max(counts.values()) <= 4) == (expected == "diverse")
        seen[user] = body["variant"]
    assert set(seen.values()) == {"control", "diverse"}
    again = client.get("/api/recommendations/u3?k=10").json()
    assert again["variant"] == seen["u3"]


def test_reranker_from_the_artifact_reorders_candidates(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_DIVERSITY_MAX_SHARE=1.0)
    publish_catalogue(runtime, reranker_onnx=popularity_reranker())
    runtime.recommender.warm("default")
    body = client_for(runtime).get("/api/recommendations/u1?k=5").json()
    # the generator ranks i00 first; the re-ranker learned that popular items win (i29 is)
    assert int(ids(body)[0][1:]) >= 20
    assert all(0.0 <= i["score"] <= 1.0 for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_similar_items_come_from_the_artifact_neighbours(catalogue) -> None:
    runtime, version = catalogue
    client = client_for(runtime)
    body = client.get("/api/items/i03/similar?k=3").json()
    assert (body["source"], body["modelVersion"]) == ("model", version)
    assert ids(body) == ["i02", "i04", "i01"]
    music = client.get("/api/items/i03/similar?k=4&category=music").json()
    assert all("music" in categories_of(i) for i in ids(music))
    assert "i03" not in ids(client.get("/api/items/i03/similar?k=30").json())
    games = client.get("/api/items/i03/similar?k=3&category=games").json()  # no neighbour is
    assert (games["source"], ids(games)) == ("cold_start", ["i29", "i28", "i27"])  # popular


def test_similar_items_without_neighbours_fall_back_to_popular_in_the_category(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    from tests.test_serving_support import catalogue_model
    from training.publish import publish

    model = catalogue_model(["u1"])
    model.extra_files = {}  # no similar.npz in this version
    publish(runtime.backends, model, "default", {"interactions": 0})
    body = client_for(runtime).get("/api/items/i13/similar?k=3").json()
    assert body["source"] == "cold_start"
    assert ids(body) == ["i19", "i18", "i17"]  # the most popular other music items


def test_popular_and_trending_lists(catalogue) -> None:
    runtime, _ = catalogue
    client = client_for(runtime)
    assert ids(client.get("/api/popular?k=3").json()) == ["i29", "i28", "i27"]
    assert ids(client.get("/api/popular?k=2&category=books").json()) == ["i09", "i08"]
    before = client.get("/api/trending?k=3").json()
    assert before["source"] == "popular" and ids(before) == ["i29", "i28", "i27"]
    now = datetime.now(UTC).timestamp()
    runtime.online.apply([
        OnlineUpdate("default", f"e{n}", f"x{n}", "i07", now, trend_weight=1.0)
        for n in range(3)
    ] + [OnlineUpdate("default", "e9", "x9", "i03", now, trend_weight=1.0)])
    runtime.online = runtime.recommender.online = type(runtime.online)(
        runtime.online.client, runtime.online.config
    )  # a fresh reader: no read cache left from the call above
    after = client.get("/api/trending?k=2").json()
    assert after["source"] == "trending" and ids(after) == ["i07", "i03"]


def test_trending_per_category_counts_events_that_name_no_category(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    """The item's category comes from the model, also in a process that has not loaded it
    yet (a feedback worker; here a fresh runtime's own event path)."""
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_TRENDING_READ_CACHE_SECONDS=1)
    publish_catalogue(runtime, tenant="cats")  # stored; this runtime has not loaded it
    assert runtime.recommender.models.current("cats") is None
    now = datetime.now(UTC).isoformat()
    events = [{"eventId": f"c{n}", "userId": f"x{n}", "itemId": "i03", "type": "purchase",
               "timestamp": now} for n in range(3)]
    client = client_for(runtime)
    assert client.post("/api/events?tenant=cats", json=events).status_code == 202
    books = client.get("/api/trending?k=2&category=books&tenant=cats").json()
    assert ids(books)[0] == "i03"


def test_a_new_item_the_app_puts_in_a_category_trends_in_that_category(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    """An item the model does not know yet, sent with `context.category`, is in that category's
    trending list: the category filter must not drop it for lack of model metadata."""
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_DIVERSITY_MAX_SHARE=1.0)
    publish_catalogue(runtime, tenant="news")
    now = datetime.now(UTC).isoformat()
    events = [{"eventId": f"n{n}", "userId": f"x{n}", "itemId": "newbook", "type": "purchase",
               "timestamp": now, "context": {"category": "books"}} for n in range(3)]
    client = client_for(runtime)
    assert client.post("/api/events?tenant=news", json=events).status_code == 202
    trending = client.get("/api/trending?k=2&category=books&tenant=news").json()
    assert ids(trending) == ["newbook", "i09"]
    cold = client.get("/api/recommendations/newbie?k=2&category=books&tenant=news").json()
    assert (cold["source"], ids(cold)) == ("cold_start", ["newbook", "i09"])
    # another category's filter still leaves it out
    assert "newbook" not in ids(client.get("/api/trending?k=30&category=music&tenant=news").json())


def test_unknown_user_gets_items_like_the_session_context(catalogue) -> None:
    runtime, _ = catalogue
    body = client_for(runtime).get("/api/recommendations/newbie?k=4&recent=i12").json()
    assert body["source"] == "cold_start"
    assert ids(body)[:2] == ["i11", "i13"] and "i12" not in ids(body)


def _events(user: str, *pairs: tuple[str, str]) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    return [{"eventId": f"{user}-{item}-{kind}", "userId": user, "itemId": item, "type": kind,
             "timestamp": now} for item, kind in pairs]


def test_a_just_purchased_item_is_absent_from_the_next_answer(catalogue) -> None:
    runtime, _ = catalogue
    client = client_for(runtime)
    assert ids(client.get("/api/recommendations/u1?k=3").json())[0] == "i00"
    accepted = client.post("/api/events", json=_events("u1", ("i00", "purchase")))
    assert accepted.status_code == 202
    body = client.get("/api/recommendations/u1?k=3").json()
    assert body["source"] == "cache" and "i00" not in ids(body)


def test_deleting_a_user_removes_everything_stored_about_them(catalogue) -> None:
    runtime, v1 = catalogue
    v2 = publish_catalogue(runtime)  # a second version: two candidate docs for u1
    client = client_for(runtime)
    client.post("/api/events", json=_events("u1", ("i00", "view"), ("i01", "purchase")))
    bad = [{"eventId": "e9", "userId": u, "itemId": "i02", "type": "teleport"}
           for u in ("u1", "u2")]
    client.post("/api/events", json=bad)  # dead-lettered, each naming its user
    cache = runtime.backends.cache.client
    assert cache.exists(candidates_cache_key("default", v1, "u1"))
    response = client.delete("/api/users/u1")
    assert response.status_code == 200
    removed = response.json()["removed"]
    assert removed["recommendations"] == 2 and removed["events"] == 2
    assert removed["deadLetters"] == 1
    assert removed["cacheKeys"] == 2 and removed["onlineState"] >= 2
    store = runtime.backends.store
    assert store.query_partition("recommendations", "default|u1") == []
    assert store.query_partition("events", "default|u1") == []
    assert [d["userId"] for d in store.scan("deadletters")] == ["u2"]  # another user's stays
    assert not cache.exists(candidates_cache_key("default", v1, "u1"))
    assert not cache.exists(candidates_cache_key("default", v2, "u1"))
    assert runtime.online.read_user("default", "u1").purchased == frozenset()
    assert client.get("/api/recommendations/u1").json()["source"] == "cold_start"
    # deleting again is fine and removes nothing
    assert set(client.delete("/api/users/u1").json()["removed"].values()) == {0}


def test_a_deletion_retried_on_another_instance_still_removes_the_cache_keys(
    catalogue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first attempt fails after deleting the candidate documents; the retry lands on an
    instance that never served the tenant: the versions come from the tenant's records."""
    from shared.runtime import Runtime
    from shared.stores.errors import BackendError
    from shared.stores.factory import build_backends
    from tests.helpers import runtime_on

    runtime, version = catalogue
    client_for(runtime).post("/api/events", json=_events("u1", ("i00", "view")))
    key = candidates_cache_key("default", version, "u1")
    cache = runtime.backends.cache.client
    assert cache.exists(key)

    def fresh_instance() -> Runtime:
        return runtime_on(runtime.settings, build_backends(runtime.settings))

    first = fresh_instance()
    real_delete = first.backends.store.delete

    def failing_on_events(container: str, doc_id: str, pk: str) -> bool:
        if container == "events":
            raise BackendError("cosmos delete failed: 503")
        return real_delete(container, doc_id, pk)

    monkeypatch.setattr(first.backends.store, "delete", failing_on_events)
    failed = client_for(first).delete("/api/users/u1")
    assert failed.status_code == 503
    # the answer says what went (the schema promises it), never the backend's own error
    assert "removed so far: 1 recommendations, 0 events, 0 deadLetters, 0 cacheKeys, " \
           "0 onlineState; retry" in failed.json()["error"]
    assert "cosmos" not in failed.json()["error"]
    assert runtime.backends.store.query_partition("recommendations", "default|u1") == []

    retry = client_for(fresh_instance()).delete("/api/users/u1")
    assert retry.status_code == 200 and retry.json()["removed"]["cacheKeys"] == 1
    assert not cache.exists(key)


def test_a_cache_write_back_racing_a_deletion_does_not_bring_the_user_back(
    catalogue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request read the user's candidates from the store just before DELETE removed them
    and writes them back to the cache after DELETE removed the cache keys."""
    runtime, version = catalogue
    client = client_for(runtime)
    key = candidates_cache_key("default", version, "u1")
    cache = runtime.backends.cache.client
    cache.delete(key)  # the next request reads the store and writes back
    store = runtime.backends.store
    real_read = store.read

    def read_then_deleted(container: str, doc_id: str, pk: str):
        doc = real_read(container, doc_id, pk)
        if container == "recommendations":
            runtime.recommender.forget_user("default", "u1")  # DELETE /api/users/u1
        return doc

    monkeypatch.setattr(store, "read", read_then_deleted)
    body = client.get("/api/recommendations/u1").json()
    assert body["source"] == "store"  # the request read before the deletion...
    assert not cache.exists(key)  # ...but its write-back did not outlive it
    monkeypatch.setattr(store, "read", real_read)
    assert client.get("/api/recommendations/u1").json()["source"] == "cold_start"
