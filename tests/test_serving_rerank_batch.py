"""Requests re-ranked together get the scores they would get alone; cached candidates stored as
item codes are read back exactly, and a value the version cannot vouch for is read from the
store instead (real Redis, the Cosmos-protocol server, Azurite, a published version)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import redis

from shared.keys import (
    CODES_MAGIC,
    candidates_cache_key,
    candidates_doc_id,
    encode_candidate_codes,
    user_partition,
)
from shared.reranking.features import FEATURES, build_features
from shared.serving.model_data import VersionData
from shared.serving.ranking import RerankInput, features_many, features_one
from shared.serving.recommender import RECOMMENDATIONS
from shared.serving.rerank_batch import RerankBatcher
from tests.helpers import client_for
from tests.test_serving_support import azure_runtime, popularity_reranker, publish_catalogue


@pytest.fixture
def served(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str):
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_DIVERSITY_MAX_SHARE=1.0)
    version = publish_catalogue(runtime, reranker_onnx=popularity_reranker())
    runtime.recommender.warm("default")
    data = runtime.recommender.models.current("default")
    assert data is not None and data.reranker is not None
    return runtime, version, data


def _inputs(data: VersionData, n: int, size: int, seed: int) -> list[RerankInput]:
    rng = np.random.default_rng(seed)
    window = (rng.random(data.n_items + 1) * 20).astype(np.float32)
    out = []
    for r in range(n):
        history = rng.integers(0, data.n_items, int(rng.integers(0, 21)) if r % 3 else 0)
        out.append(RerankInput(
            codes=rng.integers(0, data.n_items + 1, size).astype(np.int64),  # n: unknown item
            scores=(rng.random(size) * 3).astype(np.float32),
            window_pop=None if r % 4 == 1 else window,
            history=history.astype(np.int64),
            n_user=float(r),
        ))
    return out


def test_a_batch_builds_the_rows_each_request_builds_alone(served) -> None:
    _, _, data = served
    batch = _inputs(data, 12, 9, seed=1)
    together = features_many(data, batch, 1.7e9)
    alone = np.concatenate([features_one(data, *b, now=1.7e9) for b in batch])
    np.testing.assert_array_equal(together, alone)
    hist = np.full((len(batch), 20), -1, np.int64)
    for r, b in enumerate(batch):
        hist[r, : b.history.size] = b.history
    wpop = np.stack([np.zeros(9, np.float32) if b.window_pop is None else b.window_pop[b.codes]
                     for b in batch])
    training = build_features(np.stack([b.codes for b in batch]),
                              np.stack([b.scores for b in batch]), wpop, data.table, hist,
                              np.array([b.n_user for b in batch]), np.full(len(batch), 1.7e9),
                              data.pop_pct)
    assert together.shape == (12 * 9, len(FEATURES))
    np.testing.assert_array_equal(together, training)


def test_concurrent_requests_share_one_onnx_call_and_get_their_own_scores(
    served, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, data = served
    reranker = data.reranker
    assert reranker is not None
    long_lists, short_lists = _inputs(data, 10, 9, seed=2), _inputs(data, 5, 4, seed=3)
    expected = [reranker.score(features_one(data, *b, now=1.7e9)) for b in
                [*long_lists, *short_lists]]
    calls: list[int] = []
    score = reranker.score

    def counted(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return score(rows)

    monkeypatch.setattr(reranker, "score", counted)

    async def all_at_once() -> list[Any]:
        batcher = RerankBatcher(clock=lambda: 1.7e9)
        return await asyncio.gather(*(batcher.rerank(data, b)
                                      for b in [*long_lists, *short_lists]))

    got = asyncio.run(all_at_once())
    assert sorted(calls) == [5 * 4, 10 * 9]  # one call per list length, not per request
    for mine, alone in zip(got, expected, strict=True):
        np.testing.assert_array_equal(mine, alone)


def test_a_cancelled_request_does_not_disturb_its_batch(served) -> None:
    _, _, data = served
    batch = _inputs(data, 6, 5, seed=4)

    async def one_cancelled() -> list[Any]:
        batcher = RerankBatcher()
        tasks = [asyncio.ensure_future(batcher.rerank(data, b)) for b in batch]
        await asyncio.sleep(0)  # all queued
        tasks[2].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    got = asyncio.run(one_cancelled())
    assert isinstance(got[2], asyncio.CancelledError)
    assert all(isinstance(g, np.ndarray) and g.shape == (5,) for n, g in enumerate(got) if n != 2)


def test_cached_codes_come_back_as_the_published_items(served, redis_client) -> None:
    runtime, version, data = served
    raw = redis_client.get(candidates_cache_key("default", version, "u1"))
    assert isinstance(raw, bytes) and raw.startswith(CODES_MAGIC)
    found = data.candidates(raw)
    assert list(found.items) == [data.item_ids[c] for c in found.codes.tolist()]
    body = client_for(runtime).get("/api/recommendations/u1?k=3").json()
    assert body["source"] == "cache"
    assert {i["itemId"] for i in body["items"]} <= set(found.items)


def test_codes_outside_the_item_list_are_read_from_the_store_and_rewritten(
    served, redis_client
) -> None:
    runtime, version, data = served
    key = candidates_cache_key("default", version, "u2")
    redis_client.set(key, encode_candidate_codes([data.n_items + 5], [1.0]))
    body = client_for(runtime).get("/api/recommendations/u2?k=3").json()
    assert body["source"] == "store" and body["items"]
    rewritten = redis_client.get(key)
    assert isinstance(rewritten, bytes) and rewritten.startswith(CODES_MAGIC)
    doc = runtime.backends.store.read(RECOMMENDATIONS, candidates_doc_id(version, "u2"),
                                      user_partition("default", "u2"))
    assert list(data.candidates(rewritten).items) == doc["items"]


def test_a_version_without_a_named_item_list_refuses_coded_values(served) -> None:
    _, _, data = served
    value = encode_candidate_codes([0, 1], [2.0, 1.0])
    assert list(data.candidates(value).items) == [data.item_ids[0], data.item_ids[1]]
    data.coded = 0  # as for a version published before cached values held codes
    with pytest.raises(ValueError, match="item list"):
        data.candidates(value)


def test_training_builds_a_short_lists_rows_as_serving_does(served) -> None:
    """Training pads a user's short candidate list to the re-ranker's width; rank_frac was
    then taken over the padded width, so serving (the real length) fed the model other
    values than it learned from."""
    _, _, data = served
    (short,) = _inputs(data, 1, 4, seed=5)
    serving = features_one(data, *short, now=1.7e9)
    width = 9
    codes = np.full((1, width), -1, np.int64)
    codes[0, :4] = short.codes
    scores = np.zeros((1, width), np.float32)
    scores[0, :4] = short.scores
    wpop = np.zeros((1, width), np.float32)
    if short.window_pop is not None:
        wpop[0, :4] = short.window_pop[short.codes]
    hist = np.full((1, 20), -1, np.int64)
    hist[0, : short.history.size] = short.history
    training = build_features(codes, scores, wpop, data.table, hist,
                              np.array([short.n_user]), np.array([1.7e9]), data.pop_pct)
    np.testing.assert_array_equal(training[:4], serving)
