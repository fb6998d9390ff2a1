"""The default train step: the quality pipeline (select, tune, blend, re-rank) as a TrainedModel.

Serving re-ranks at request time with fresh context, so the stored lists are the blend's
candidates with the blend's scores (the re-ranker's `score` feature); the fitted re-ranker goes
with them as ONNX. Data too small to tune on gets the popularity model instead.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from training.interactions import DataError, Interactions
from training.model import TrainedModel
from training.popularity import popular_for_users_without_likes, train_popularity

log = logging.getLogger(__name__)

MIN_ROWS = 200  # below these the validation split has too little signal to tune on
MIN_USERS = 20
MIN_ITEMS = 10
SIMILAR_PER_ITEM = 20


MIN_VALIDATION_USERS = 10  # users with enough distinct items to hold some out for tuning
MIN_ITEMS_TO_HOLD_OUT = 3  # a user with fewer keeps all of them in the fit part


def too_small(data: Interactions) -> bool:
    """Too little to tune on: few rows, users or items, or too few users who can lend the
    validation split an item (with one or two items each, it would be empty)."""
    if len(data) < MIN_ROWS or data.n_users < MIN_USERS or data.n_items < MIN_ITEMS:
        return True
    pairs = data.one_row_per_pair()
    per_user = np.bincount(pairs.users, minlength=data.n_users)
    return int((per_user >= MIN_ITEMS_TO_HOLD_OUT).sum()) < MIN_VALIDATION_USERS


def item_stats_npz(data: Interactions) -> bytes:
    """Per-item statistics the request-time re-ranker features need (see serving model_data)."""
    n = data.n_items
    ts = data.timestamps.astype(np.float64)
    pop = np.bincount(data.items, minlength=n).astype(np.float32)
    first = np.full(n, np.inf)
    np.minimum.at(first, data.items, ts)
    t_max = float(ts.max()) if ts.size else 0.0
    first[~np.isfinite(first)] = t_max
    last = np.zeros(n)
    np.maximum.at(last, data.items, ts)
    wsum = np.bincount(data.items, data.weights, minlength=n)
    buf = io.BytesIO()
    np.savez_compressed(
        buf, item_ids=data.item_ids, popularity=pop, first_seen=first, last_seen=last,
        mean_weight=(wsum / np.maximum(pop, 1)).astype(np.float32),
    )
    return buf.getvalue()


def _similar_npz(item_ids: npt.NDArray[np.str_], neighbours: npt.NDArray[np.int32],
                 scores: npt.NDArray[np.float32]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, item_ids=item_ids, neighbours=neighbours, scores=scores)
    return buf.getvalue()


def train_default(
    data: Interactions,
    n_candidates: int = 100,
    tuning_seconds: float = 60.0,
    item_metadata: dict[str, dict[str, Any]] | None = None,
    categories: npt.NDArray[np.float32] | None = None,
    seed: int = 7,
) -> TrainedModel:
    """Top-`n_candidates` per user from the default pipeline, learnt from the rows with a
    positive weight; every item a user has a row for, dislikes included, is left out."""
    liked = data.positive()
    if len(liked) == 0:
        raise DataError("no interaction has a weight above 0: weights of 0 or below are "
                        "dislikes, which leave nothing to learn from")
    if len(liked) < len(data):
        log.info("%d of %d rows have a weight of 0 or below: dislikes, not learnt from, their "
                 "items never recommended to their users", len(data) - len(liked), len(data))
    if too_small(liked):
        model = train_popularity(data, n_candidates)
        model.parameters["reason"] = (
            f"{len(liked)} interactions, {data.n_users} users, {data.n_items} items: "
            "too few to tune on (or too few users with 3+ items to hold some out), popularity used"
        )
        model.extra_files["item_stats.npz"] = item_stats_npz(liked)
        model.item_metadata = dict(item_metadata or {})
        return model
    from shared.reranking.features import FEATURES
    from training import reranker
    from training.pipeline import DefaultPipeline, PipelineConfig

    pipe = DefaultPipeline(PipelineConfig(budget_seconds=tuning_seconds, seed=seed))
    pipe.fit(liked, categories)
    assert pipe.blend is not None  # fitted
    users = np.arange(data.n_users, dtype=np.int64)
    hidden = data.matrix(binary=True)  # every item a user has a row for, dislikes included
    top_items, top_scores = pipe.blend.recommend(users, n_candidates, hidden)
    top_items, top_scores = top_items.astype(np.int32), top_scores.astype(np.float32)
    popular_for_users_without_likes(liked, hidden, top_items, top_scores)  # blend scores 0
    onnx: bytes | None = None
    if pipe.model is not None:
        try:
            onnx = reranker.to_onnx(pipe.model)
        except Exception as exc:  # serving then orders by the stored scores
            log.warning("re-ranker ONNX export failed, publishing without it: %s", exc)
    items = np.arange(data.n_items, dtype=np.int64)
    neighbours, sim_scores = pipe.similar_items(items, min(SIMILAR_PER_ITEM, data.n_items - 1))
    report = pipe.report
    return TrainedModel(
        generator=f"default:{pipe.blend.name}",
        parameters={
            "plan": report.plan,
            "params": report.params,
            "weights": report.weights,
            "val_ndcg": report.val_ndcg,
            "reranker": report.reranker,
            "tuning_seconds": tuning_seconds,
        },
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        top_items=top_items,
        top_scores=top_scores,
        popularity=np.bincount(liked.items, minlength=data.n_items).astype(np.float32),
        item_metadata=dict(item_metadata or {}),
        reranker_onnx=onnx,
        features=list(FEATURES) if onnx is not None else [],
        extra_files={
            "item_stats.npz": item_stats_npz(liked),
            "similar.npz": _similar_npz(
                data.item_ids, neighbours.astype(np.int32), sim_scores.astype(np.float32)
            ),
        },
    )
