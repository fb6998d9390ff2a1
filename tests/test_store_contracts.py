"""Every backend implementation honours the same contract (embedded and Azure-protocol)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from shared.stores.artifacts import ArtifactNotFound, ArtifactStore
from shared.stores.cache import HotCache
from shared.stores.documents import CosmosStore, DocumentStore
from tests.conftest import fresh_cosmos_store


def test_cache_round_trip_and_missing_keys(cache: HotCache) -> None:
    cache.set_many({"a": b"1", "b": b"2"})
    assert cache.get("a") == b"1"
    assert cache.get("nope") is None
    assert cache.get_many(["b", "nope", "a"]) == [b"2", None, b"1"]
    assert cache.ping()


def test_cache_delete_and_delete_prefix(cache: HotCache) -> None:
    cache.set_many({"t:v1:u1": b"x", "t:v1:u2": b"y", "t:v2:u1": b"z"})
    assert cache.delete(["t:v2:u1", "missing"]) == 1
    assert cache.delete_prefix("t:v1:") == 2
    assert cache.get_many(["t:v1:u1", "t:v1:u2", "t:v2:u1"]) == [None, None, None]


def test_cache_entries_expire_after_ttl(cache: HotCache) -> None:
    cache.set_many({"short": b"1"}, ttl_seconds=1)
    assert cache.get("short") == b"1"
    time.sleep(1.2)
    assert cache.get("short") is None


def test_store_point_read_upsert_and_missing(store: DocumentStore) -> None:
    assert store.read("recommendations", "nobody", "t|nobody") is None
    store.upsert("recommendations", {"id": "v1|u1", "pk": "t|u1", "items": ["a", "b"]})
    assert store.read("recommendations", "v1|u1", "t|u1") == {
        "id": "v1|u1", "pk": "t|u1", "items": ["a", "b"],
    }
    store.upsert("recommendations", {"id": "v1|u1", "pk": "t|u1", "items": ["c"]})
    doc = store.read("recommendations", "v1|u1", "t|u1")
    assert doc is not None and doc["items"] == ["c"]
    # the same id in another partition is another document
    assert store.read("recommendations", "v1|u1", "t|u2") is None


def test_store_create_is_insert_once(store: DocumentStore) -> None:
    assert store.create("events", {"id": "e1", "pk": "t|u1", "n": 1})
    assert not store.create("events", {"id": "e1", "pk": "t|u1", "n": 2})
    doc = store.read("events", "e1", "t|u1")
    assert doc is not None and doc["n"] == 1


def test_store_delete_query_partition_and_scan(store: DocumentStore) -> None:
    n = store.upsert_many(
        "events",
        [{"id": f"e{i}", "pk": "t|u1" if i < 3 else "t|u2", "i": i} for i in range(5)],
    )
    assert n == 5
    assert [d["id"] for d in store.query_partition("events", "t|u1")] == ["e0", "e1", "e2"]
    assert store.delete("events", "e0", "t|u1")
    assert not store.delete("events", "e0", "t|u1")
    assert sorted(d["id"] for d in store.scan("events")) == ["e1", "e2", "e3", "e4"]
    assert store.ping()


def test_store_delete_many(store: DocumentStore) -> None:
    store.upsert_many("recommendations", [{"id": f"v1|u{n}", "pk": f"t|u{n}", "n": n}
                                          for n in range(3)])
    # an id names a document within its partition; a repeated pair counts once
    ids = [("v1|u2", "t|u2"), ("v1|u0", "t|u1"), ("v1|u0", "t|u0"), ("v1|u2", "t|u2")]
    assert store.delete_many("recommendations", ids) == 2  # each existing document once
    assert store.delete_many("recommendations", []) == 0
    assert store.query_partition("recommendations", "t|u1") == [
        {"id": "v1|u1", "pk": "t|u1", "n": 1}]
    assert store.read("recommendations", "v1|u0", "t|u0") is None


def test_store_delete_if_deletes_only_a_document_that_still_matches(
    store: DocumentStore,
) -> None:
    store.upsert("models", {"id": "lease|x", "pk": "t", "token": "mine", "n": 1})
    assert not store.delete_if("models", "lease|x", "t", {"token": "theirs"})
    assert store.read("models", "lease|x", "t") is not None  # a different holder's: kept
    assert store.delete_if("models", "lease|x", "t", {"token": "mine"})
    assert store.read("models", "lease|x", "t") is None
    assert not store.delete_if("models", "lease|x", "t", {"token": "mine"})  # already gone
    with pytest.raises(ValueError, match="field names"):
        store.delete_if("models", "lease|x", "t", {"token') OR (1": "x"})


def test_store_replace_if_writes_only_over_a_document_that_still_matches(
    store: DocumentStore,
) -> None:
    store.upsert("models", {"id": "lease|x", "pk": "t", "token": "mine", "n": 1})
    assert not store.replace_if("models", {"id": "lease|x", "pk": "t", "token": "theirs",
                                           "n": 2}, {"token": "theirs"})
    assert store.read("models", "lease|x", "t") == {"id": "lease|x", "pk": "t",
                                                   "token": "mine", "n": 1}
    assert store.replace_if("models", {"id": "lease|x", "pk": "t", "token": "mine", "n": 3},
                            {"token": "mine"})
    assert store.read("models", "lease|x", "t") == {"id": "lease|x", "pk": "t",
                                                   "token": "mine", "n": 3}
    assert not store.replace_if("models", {"id": "gone", "pk": "t", "token": "mine"},
                                {"token": "mine"})  # never creates
    assert store.read("models", "gone", "t") is None


@contextmanager
def _someone_writes_after_the_read(store: CosmosStore, doc: dict[str, Any]) -> Iterator[None]:
    """The race the conditions exist for: `doc` is written between the store's read of the
    document and its conditional write."""
    container = store._container("models")
    real_read = container.read_item

    def read_then_someone_writes(*args: Any, **kwargs: Any) -> Any:
        found = real_read(*args, **kwargs)
        store.upsert("models", doc)
        return found

    container.read_item = read_then_someone_writes
    try:
        yield
    finally:
        del container.read_item


def test_cosmos_replace_if_loses_to_a_write_after_its_read(cosmos_endpoint: str) -> None:
    cosmos_store = fresh_cosmos_store(cosmos_endpoint)
    assert isinstance(cosmos_store, CosmosStore)
    cosmos_store.upsert("models", {"id": "lease|z", "pk": "t", "token": "mine", "n": 1})
    with _someone_writes_after_the_read(
            cosmos_store, {"id": "lease|z", "pk": "t", "token": "theirs", "n": 2}):
        assert not cosmos_store.replace_if(
            "models", {"id": "lease|z", "pk": "t", "token": "mine", "n": 3}, {"token": "mine"})
    kept = cosmos_store.read("models", "lease|z", "t")
    assert kept is not None and kept["token"] == "theirs"


def test_cosmos_delete_if_loses_to_a_write_after_its_read(cosmos_endpoint: str) -> None:
    """Someone rewrites the document (same token, new etag) between delete_if's read and its
    delete; Cosmos refuses the delete (412)."""
    cosmos_store = fresh_cosmos_store(cosmos_endpoint)
    assert isinstance(cosmos_store, CosmosStore)
    cosmos_store.upsert("models", {"id": "lease|y", "pk": "t", "token": "mine", "n": 1})
    with _someone_writes_after_the_read(
            cosmos_store, {"id": "lease|y", "pk": "t", "token": "mine", "n": 2}):
        assert not cosmos_store.delete_if("models", "lease|y", "t", {"token": "mine"})
    kept = cosmos_store.read("models", "lease|y", "t")
    assert kept is not None and kept["n"] == 2


def test_store_rejects_unknown_container_and_bad_documents(store: DocumentStore) -> None:
    with pytest.raises(ValueError, match="unknown container"):
        store.read("nope", "a", "b")
    with pytest.raises(ValueError, match="'id' and 'pk'"):
        store.upsert("events", {"id": "x"})


def test_artifacts_put_get_list(artifacts: ArtifactStore) -> None:
    artifacts.put("t/v1/manifest.json", b"{}")
    artifacts.put("t/v1/popular.json", b"[]")
    artifacts.put("t/v2/manifest.json", b"{}")
    assert artifacts.get("t/v1/popular.json") == b"[]"
    assert artifacts.list("t/v1") == ["t/v1/manifest.json", "t/v1/popular.json"]
    with pytest.raises(ArtifactNotFound):
        artifacts.get("t/v1/missing.bin")
    with pytest.raises(ValueError, match="invalid artifact path"):
        artifacts.put("../escape", b"x")
    assert artifacts.ping()


def test_store_scan_filters_on_fields_in_the_store(store: DocumentStore) -> None:
    store.upsert_many("events", [
        {"id": "e1", "pk": "a|u1", "tenant": "a", "type": "click"},
        {"id": "e2", "pk": "a|u2", "tenant": "a", "type": "view"},
        {"id": "e3", "pk": "b|u1", "tenant": "b", "type": "click"},
    ])
    assert sorted(d["id"] for d in store.scan("events", {"tenant": "a"})) == ["e1", "e2"]
    assert [d["id"] for d in store.scan("events", {"tenant": "a", "type": "click"})] == ["e1"]
    assert list(store.scan("events", {"tenant": "nobody"})) == []
    with pytest.raises(ValueError, match="cannot filter"):
        list(store.scan("events", {"tenant = 'a' OR 1=1 --": "x"}))
