"""Hand-computed cases for every metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse

from training import metrics


def truth(rows: list[list[int]], n_items: int = 10) -> sparse.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sparse.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


RECS = np.array([[1, 2, 3], [4, 5, -1]], dtype=np.int32)
TRUTH = truth([[1, 3, 7, 8], [9]])  # user 0: hits at ranks 1 and 3; user 1: no hit


def test_precision_counts_k_not_list_length() -> None:
    assert metrics.precision_at_k(RECS, TRUTH, k=3) == pytest.approx((2 / 3 + 0) / 2)


def test_recall_divides_by_all_relevant() -> None:
    assert metrics.recall_at_k(RECS, TRUTH, k=3) == pytest.approx((2 / 4 + 0) / 2)


def test_ndcg_binary_gain_with_capped_ideal() -> None:
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # min(4, k=3) ideal hits
    assert metrics.ndcg_at_k(RECS, TRUTH, k=3) == pytest.approx((dcg / idcg + 0) / 2)


def test_map_at_k_and_full_map() -> None:
    ap_sum = 1 / 1 + 2 / 3  # precision at each hit
    assert metrics.map_at_k(RECS, TRUTH, k=3) == pytest.approx((ap_sum / 3 + 0) / 2)
    assert metrics.map_full(RECS, TRUTH, k=3) == pytest.approx((ap_sum / 4 + 0) / 2)


def test_users_without_test_items_are_ignored() -> None:
    t = truth([[1], []])
    recs = np.array([[1, 2], [3, 4]], dtype=np.int32)
    assert metrics.precision_at_k(recs, t, k=2) == pytest.approx(0.5)
    assert metrics.ndcg_at_k(recs, t, k=2) == pytest.approx(1.0)


def test_perfect_list_scores_one() -> None:
    t = truth([[0, 1]])
    recs = np.array([[1, 0, 5]], dtype=np.int32)
    assert metrics.ndcg_at_k(recs, t, k=3) == pytest.approx(1.0)
    assert metrics.map_at_k(recs, t, k=3) == pytest.approx(1.0)
    assert metrics.recall_at_k(recs, t, k=3) == pytest.approx(1.0)


def test_coverage_novelty_popularity_bias() -> None:
    assert metrics.catalog_coverage(RECS, n_items=10, k=3) == pytest.approx(5 / 10)
    counts = np.array([0, 4, 2, 1, 1, 1, 0, 0, 0, 0], dtype=float)  # users per item
    expected = np.mean([-math.log2(c / 8) for c in (4, 2, 1, 1, 1)])
    assert metrics.novelty(RECS, counts, n_users=8, k=3) == pytest.approx(expected)
    assert metrics.popularity_bias(RECS, counts, k=3) == pytest.approx(np.mean([4, 2, 1, 1, 1]) / 4)
    # interaction counts above the number of users (repeated events): p is capped at 1
    assert metrics.novelty(RECS, counts * 10, n_users=8, k=3) == pytest.approx(
        np.mean([-math.log2(min(c * 10, 8) / 8) for c in (4, 2, 1, 1, 1)]))
    assert metrics.novelty(RECS, counts * 10, n_users=8, k=3) >= 0


def test_intra_list_diversity() -> None:
    cats = sparse.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=float))
    recs = np.array([[0, 1, 2], [0, 3, -1]], dtype=np.int32)
    # list 0: pairs (0,1)=0, (0,2)=1, (1,2)=1 -> 2/3 ; list 1: (0,3) = 1 - 1/sqrt(2)
    expected = (2 / 3 + (1 - 1 / math.sqrt(2))) / 2
    assert metrics.intra_list_diversity(recs, cats, k=3) == pytest.approx(expected)


def test_intra_list_diversity_of_long_lists_needs_no_k_by_k_arrays() -> None:
    """It built users x k x k similarities (and as large masks): `evaluate --k 1000` on
    MovieLens 100K peaked at 16.8 GB, and on 1M it could not run. Same values, small memory."""
    import tracemalloc

    rng = np.random.default_rng(3)
    n_items, k = 2000, 500
    cats = sparse.csr_matrix((rng.random((n_items, 6)) < 0.3).astype(float))
    recs = np.stack([rng.permutation(n_items)[:k] for _ in range(40)]).astype(np.int32)
    recs[0, 3:] = -1  # a short list
    recs[1, 1:] = -1  # one item: no pairs, skipped
    small = recs[:, :12]
    brute = []  # the definition, pair by pair
    dense = cats.toarray()
    for row in small:
        items = row[row >= 0]
        if items.size < 2:
            continue
        norms = np.linalg.norm(dense[items], axis=1)
        sims = [0.0 if norms[a] == 0 or norms[b] == 0 else
                dense[items[a]] @ dense[items[b]] / (norms[a] * norms[b])
                for a in range(items.size) for b in range(items.size) if a != b]
        brute.append(np.mean([1 - s for s in sims]))
    assert metrics.intra_list_diversity(small, cats, k=12) == pytest.approx(np.mean(brute))
    tracemalloc.start()
    metrics.intra_list_diversity(recs, cats, k=k)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.0f} MiB"
