"""Event data repeats (user, item) pairs and carries extreme weights: tuning stays sighted."""

from __future__ import annotations

import numpy as np

from tests.retrain_data import clustered
from training.interactions import Interactions
from training.pipeline import DefaultPipeline, PipelineConfig


def viewed_then_bought(data: Interactions, later: int = 10) -> Interactions:
    """Every interaction twice: a view, then a purchase of the same item `later` s later."""
    twice = np.r_[np.arange(len(data)), np.arange(len(data))]
    return Interactions(
        data.user_ids, data.item_ids, data.users[twice], data.items[twice],
        np.r_[np.ones(len(data)), np.full(len(data), 4.0)].astype(np.float32),
        np.r_[data.timestamps, data.timestamps + later], data.source,
    )


def test_one_row_per_pair_keeps_the_strongest_weight_and_the_latest_time() -> None:
    data = Interactions.from_columns(
        np.array(["u1", "u1", "u2", "u1"]), np.array(["a", "a", "a", "b"]),
        np.array([1, 4, 2, 1], np.float32), np.array([10, 20, 5, 30]),
    )
    one = data.one_row_per_pair()
    rows = sorted(zip(one.user_ids[one.users].tolist(), one.item_ids[one.items].tolist(),
                      one.weights.tolist(), one.timestamps.tolist(), strict=True))
    assert rows == [("u1", "a", 4.0, 20), ("u1", "b", 1.0, 30), ("u2", "a", 2.0, 5)]
    assert data.subset(np.array([True, False, True, True])).one_row_per_pair().weights.size == 3


def test_tuning_on_repeated_pairs_scores_what_it_would_on_the_pairs() -> None:
    """Split by row, a pair landed on both sides: its validation item was 'seen', every
    trial scored 0 and the blend was chosen blind."""
    data = viewed_then_bought(clustered(n_users=120, seed=3))
    pipe = DefaultPipeline(PipelineConfig(budget_seconds=2.0, rerank=False))
    pipe.fit(data)
    assert pipe.report.val_ndcg > 0.2


def test_extreme_weights_break_one_member_not_the_blends_tuning() -> None:
    """Weights of 1 and 1e36 (legal float32 values) give the centred member non-finite scores;
    a weight of 0 times NaN is NaN, so every blend scored 0 and tuning was blind."""
    base = clustered(n_users=120, seed=3)
    weights = np.ones(len(base), np.float32)
    weights[::2] = 1e36  # their float32 mean overflows
    data = Interactions(base.user_ids, base.item_ids, base.users, base.items, weights,
                        base.timestamps, base.source)
    pipe = DefaultPipeline(PipelineConfig(budget_seconds=2.0, rerank=False))
    pipe.fit(data)
    assert pipe.report.val_ndcg > 0.2
