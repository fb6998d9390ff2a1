"""Builders the serving tests share: a small catalogue with categories, neighbours and an
optional ONNX re-ranker, published through the real publish path (no tests in here)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import redis

from shared.reranking.features import FEATURES
from shared.runtime import Runtime
from shared.serving.model_data import encode_similar
from shared.stores.factory import build_backends
from tests.conftest import azure_settings
from tests.helpers import runtime_on
from training.model import TrainedModel
from training.publish import publish

# 30 items: i00-i09 books, i10-i19 music, i20-i29 games; i05 is also "music".
ITEMS = [f"i{n:02d}" for n in range(30)]
CATEGORY = {**{f"i{n:02d}": "books" for n in range(10)},
            **{f"i{n:02d}": "music" for n in range(10, 20)},
            **{f"i{n:02d}": "games" for n in range(20, 30)}}


def categories_of(item: str) -> list[str]:
    return [CATEGORY[item], "music"] if item == "i05" else [CATEGORY[item]]


def catalogue_model(users: list[str], seed: int = 0, generator: str = "synthetic",
                    reranker_onnx: bytes | None = None) -> TrainedModel:
    """Every user's candidates: books first (i00..i09), then music, then games, scores falling.

    Popularity rises with the item number, so popular order and candidate order disagree.
    Neighbours: the other items of the same category, nearest number first.
    """
    n_items = len(ITEMS)
    order = np.arange(n_items, dtype=np.int32)
    top_items = np.tile(order, (len(users), 1))
    rng = np.random.default_rng(seed)
    top_scores = np.tile(np.linspace(1.0, 0.1, n_items, dtype=np.float32), (len(users), 1))
    top_scores += rng.random(top_scores.shape).astype(np.float32) * 1e-4
    neighbours = np.full((n_items, 9), -1, dtype=np.int32)
    sims = np.zeros((n_items, 9), dtype=np.float32)
    for i in range(n_items):
        base = (i // 10) * 10
        others = sorted((j for j in range(base, base + 10) if j != i), key=lambda j: abs(j - i))
        neighbours[i] = others
        sims[i] = [1.0 / (1 + abs(j - i)) for j in others]
    return TrainedModel(
        generator=generator,
        parameters={"seed": seed},
        user_ids=np.array(users),
        item_ids=np.array(ITEMS),
        top_items=top_items,
        top_scores=top_scores,
        popularity=np.arange(1, n_items + 1, dtype=np.float32),
        item_metadata={i: {"title": f"Item {i}", "categories": categories_of(i)} for i in ITEMS},
        reranker_onnx=reranker_onnx,
        features=list(FEATURES) if reranker_onnx is not None else [],
        extra_files={"similar.npz": encode_similar(ITEMS, neighbours, sims)},
    )


def popularity_reranker() -> bytes:
    """An ONNX re-ranker that learned 'popular items are clicked': it ranks by log_pop alone."""
    from training.reranker import new_model, to_onnx

    rng = np.random.default_rng(1)
    col = FEATURES.index("log_pop")
    x = np.zeros((4000, len(FEATURES)), np.float32)
    x[:, col] = rng.random(4000) * 4
    y = rng.random(4000) < x[:, col] / 4  # the more popular, the likelier a click
    model = new_model()
    model.trees.set_params(min_samples_leaf=20)
    return to_onnx(model.fit(x, y.astype(np.float32)))


def publish_catalogue(runtime: Runtime, tenant: str = "default", users: list[str] | None = None,
                      **kwargs: Any) -> str:
    model = catalogue_model(users or ["u1", "u2", "u3"], **kwargs)
    rows = {"interactions": 0, "users": len(model.user_ids), "items": len(ITEMS)}
    version = publish(runtime.backends, model, tenant, rows,
                      runtime.settings.cache_ttl_seconds).version
    return version


def azure_runtime(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
                  **extra: object) -> Runtime:
    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection, **extra)
    return runtime_on(settings, build_backends(settings))


def unique_tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def make_catalogue(redis_client: redis.Redis, cosmos_endpoint: str,
                   azurite_connection: str) -> tuple[Runtime, str]:
    """The catalogue published on the shared stand-ins, diversity off (tests turn it on)."""
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection,
                            RECO_DIVERSITY_MAX_SHARE=1.0)
    return runtime, publish_catalogue(runtime)
