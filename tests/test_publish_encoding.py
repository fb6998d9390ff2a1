"""The fill's vectorised encodings decode to exactly the model's lists (store JSON on both
item-id paths, cached codes; padding, extreme scores), and land in real Redis through the
pipelined writer."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from shared.keys import candidates_cache_key, decode_candidate_codes, decode_candidates
from shared.stores.cache import LruCache, RedisCache
from training.model import TrainedModel
from training.publish import CandidateEncoder, fill_cache_only


def _model(item_ids: list[str], users: int = 300, width: int = 40, seed: int = 0) -> TrainedModel:
    rng = np.random.default_rng(seed)
    top = rng.integers(0, len(item_ids), size=(users, width)).astype(np.int32)
    scores = (rng.normal(size=(users, width)) * 1000).astype(np.float32)
    top[3, 20:] = -1  # a short list
    top[4, :] = -1  # no candidates
    top[5, 7] = -1  # a hole in the middle
    scores[6] = 0.0
    scores[7] *= 1e-12
    scores[8] *= 1e12
    return TrainedModel("t", {}, np.array([f"u{u}" for u in range(users)]), np.array(item_ids),
                        top, scores, np.ones(len(item_ids), np.float32))


SAME_LENGTH = [f"item{i:05d}" for i in range(2000)]
MIXED = [("x" * (i % 40)) + str(i) + '"\\é' for i in range(2000)]  # quotes, escapes, unicode


@pytest.mark.parametrize("ids", [SAME_LENGTH, MIXED], ids=["fixed-width", "joined"])
def test_encoded_lists_decode_to_the_model_lists(ids: list[str]) -> None:
    model = _model(ids)
    encoder = CandidateEncoder(model)
    assert (encoder._fixed is not None) == (ids is SAME_LENGTH)
    for u, payload in enumerate(encoder.encode(0, model.user_ids.size)):
        items, scores = decode_candidates(payload)
        expected = model.candidates_for(u)
        assert items == [i for i, _ in expected]
        peak = max([abs(s) for _, s in expected], default=0.0)
        assert np.allclose(scores, [s for _, s in expected], rtol=1e-6, atol=peak * 1e-6)
    assert decode_candidates(encoder.encode(4, 5)[0]) == ([], [])


def _coded_ids(model: TrainedModel, raw: object) -> list[str]:
    assert isinstance(raw, bytes)
    decoded = decode_candidate_codes(raw)
    assert decoded is not None
    return [str(model.item_ids[c]) for c in decoded[0].tolist()]


def test_cached_codes_decode_to_the_model_lists() -> None:
    model = _model(MIXED)
    for u, payload in enumerate(CandidateEncoder(model).encode_codes(0, model.user_ids.size)):
        decoded = decode_candidate_codes(payload)
        assert decoded is not None
        codes, scores = decoded
        expected = model.candidates_for(u)
        assert [str(model.item_ids[c]) for c in codes.tolist()] == [i for i, _ in expected]
        assert scores.tolist() == [float(np.float32(s)) for _, s in expected]


def test_cache_fill_writes_every_user_with_ttl_to_redis(redis_client: redis.Redis) -> None:
    model = _model(SAME_LENGTH, users=2500)
    n = fill_cache_only(RedisCache(redis_client), model, "t", "v1", 3600, chunk_users=400)
    assert n == 2500 and redis_client.dbsize() == 2500
    raw = redis_client.get(candidates_cache_key("t", "v1", "u10"))
    assert _coded_ids(model, raw) == [i for i, _ in model.candidates_for(10)]
    assert 3500 < redis_client.ttl(candidates_cache_key("t", "v1", "u2499")) <= 3600


def test_cache_fill_works_on_the_embedded_cache_too() -> None:
    model = _model(SAME_LENGTH, users=50)
    cache = LruCache(1000)
    fill_cache_only(cache, model, "t", "v1", None, chunk_users=7)
    assert _coded_ids(model, cache.get("reco:t:v1:u:u0")) == [
        i for i, _ in model.candidates_for(0)
    ]
