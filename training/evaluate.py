"""Score a generator (or ready-made lists) against a test split that shares the train vocabulary."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training import metrics
from training.generators.base import IntArray, Recommender
from training.interactions import Interactions


def truth_matrix(test: Interactions) -> sparse.csr_matrix:
    """Binary users x items matrix of the relevant test interactions: any with a weight above
    0 (a dislike in the test is no hit; a user with only dislikes is not averaged over)."""
    return test.positive().matrix(binary=True)


def evaluate_lists(
    recs: IntArray,
    test: Interactions,
    k: int = 10,
    train: Interactions | None = None,
    item_categories: sparse.csr_matrix | None = None,
) -> dict[str, float]:
    """Accuracy metrics for recs (rows = user codes of test's vocabulary), plus beyond-accuracy.

    Coverage, novelty and popularity bias need the train split; diversity needs item categories.
    """
    truth = truth_matrix(test)
    out = metrics.ranking_metrics(recs, truth, k)
    out["coverage"] = metrics.catalog_coverage(recs, test.n_items, k)
    if train is not None:
        seen = train.matrix(binary=True)
        counts = np.bincount(seen.indices, minlength=train.n_items).astype(np.float64)
        out["novelty"] = metrics.novelty(recs, counts, train.n_users, k)
        out["popularity_bias"] = metrics.popularity_bias(recs, counts, k)
    if item_categories is not None:
        out["diversity"] = metrics.intra_list_diversity(recs, item_categories, k)
    return out


def test_users(test: Interactions) -> npt.NDArray[np.int64]:
    """User codes that have at least one test interaction (the users metrics average over)."""
    return np.unique(test.users).astype(np.int64)


def evaluate_generator(
    gen: Recommender,
    train: Interactions,
    test: Interactions,
    k: int = 10,
    item_categories: sparse.csr_matrix | None = None,
) -> dict[str, float]:
    """Top-k over unseen items for every user, train items excluded, scored on test."""
    users = np.arange(test.n_users, dtype=np.int64)
    recs, _ = gen.recommend(users, k, exclude=train.matrix(binary=True))
    return evaluate_lists(recs, test, k, train=train, item_categories=item_categories)
