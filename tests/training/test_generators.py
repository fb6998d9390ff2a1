"""Every generator on tiny made-up data: unseen items only, exclude respected, shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from training.generators.als import ALS
from training.generators.base import CandidateGenerator
from training.generators.ease import EASE
from training.generators.ensemble import Blend
from training.generators.item_knn import ItemKNN
from training.generators.low_pass import LowPass
from training.generators.popularity import Popularity
from training.generators.selector import choose

# two taste groups: users 0-3 like items 0-3, users 4-7 like items 4-7; item 8 is rare
ROWS = [[0, 1, 2], [0, 1, 3], [1, 2, 3], [0, 2, 3, 8], [4, 5, 6], [4, 5, 7], [5, 6, 7], [4, 6, 7]]
TRAIN = sparse.csr_matrix(
    (
        np.ones(sum(map(len, ROWS)), np.float32),
        ([u for u, r in enumerate(ROWS) for _ in r], [i for r in ROWS for i in r]),
    ),
    shape=(8, 9),
)


def generators() -> list[CandidateGenerator]:
    return [
        Popularity(),
        ItemKNN(neighbours=5, shrink=0.0),
        EASE(reg=1.0),
        ALS(factors=4, regularization=0.01, alpha=5.0, iterations=10),
        LowPass(factors=2),
        Blend([EASE(reg=1.0), ItemKNN(5, 0.0)], [1.0, 0.5]),
    ]


@pytest.mark.parametrize("gen", generators(), ids=lambda g: g.name)
def test_recommends_unseen_items_with_shapes(gen: CandidateGenerator) -> None:
    gen.fit(TRAIN)
    items, scores = gen.recommend(np.arange(8), 3, exclude=None)
    assert items.shape == (8, 3) and items.dtype == np.int32 and scores.dtype == np.float32
    for u, row in enumerate(items):
        assert not set(row[row >= 0].tolist()) & set(ROWS[u])
        assert np.all(np.diff(scores[u][row >= 0]) <= 1e-6)  # best first


@pytest.mark.parametrize("gen", [*generators()[1:3], LowPass(factors=2)], ids=lambda g: g.name)
def test_models_learn_the_taste_groups(gen: CandidateGenerator) -> None:
    gen.fit(TRAIN)
    items, _ = gen.recommend(np.array([0, 4]), 1)
    assert items[0, 0] == 3 and items[1, 0] == 7


@pytest.mark.parametrize("gen", generators(), ids=lambda g: g.name)
def test_respects_explicit_exclude_and_pads(gen: CandidateGenerator) -> None:
    gen.fit(TRAIN)
    everything_but_one = sparse.csr_matrix(np.ones((8, 9), np.float32))
    everything_but_one[0, 5] = 0
    everything_but_one.eliminate_zeros()
    items, _ = gen.recommend(np.array([0]), 4, exclude=everything_but_one)
    assert items[0].tolist() == [5, -1, -1, -1]


@pytest.mark.parametrize("gen", generators()[1:5], ids=lambda g: g.name)
def test_similar_items_exclude_the_item_itself(gen: CandidateGenerator) -> None:
    gen.fit(TRAIN)
    items, _ = gen.similar_items(np.array([0, 4]), 3)
    assert items.shape == (2, 3)
    assert 0 not in items[0].tolist() and 4 not in items[1].tolist()
    assert set(items[0][items[0] >= 0].tolist()) <= {1, 2, 3, 8}


def test_selector_refuses_dense_ease_for_large_catalogues() -> None:
    assert choose(1_682).members[0] == "ease"
    assert choose(17_000).members[0] == "item_knn"


def test_ease_user_weight_is_plain_ease_for_equal_users_and_learns_groups() -> None:
    """Down-weighting heavy users changes nothing when every user has the same count."""
    plain, weighted = EASE(reg=1.0), EASE(reg=1.0 / 3**0.5, user_weight=0.5)
    equal = TRAIN[[0, 1, 2, 4, 5, 6, 7]]  # all three items each
    plain.fit(equal)
    weighted.fit(equal)
    assert plain.weights is not None and weighted.weights is not None
    np.testing.assert_allclose(plain.weights, weighted.weights, rtol=1e-4, atol=1e-6)
    assert weighted.params()["user_weight"] == 0.5
    skewed = EASE(reg=1.0, user_weight=0.5)
    skewed.fit(TRAIN)
    items, _ = skewed.recommend(np.array([0, 4]), 1)
    assert items[0, 0] == 3 and items[1, 0] == 7


def test_low_pass_scores_are_the_gf_cf_ideal_low_pass_filter() -> None:
    """r_u D_I^-1/2 V V' D_I^1/2, V the top right singular vectors of D_U^-1/2 R D_I^-1/2."""
    rng = np.random.default_rng(3)
    r = (rng.random((30, 20)) < 0.3).astype(np.float64)
    r[0] = 0  # a user without interactions, and an item without any
    r[:, 5] = 0
    gen = LowPass(factors=4)
    gen.fit(sparse.csr_matrix(r))
    du, di = r.sum(axis=1), r.sum(axis=0)
    inv = lambda d: np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0.0)  # noqa: E731
    _, _, vt = np.linalg.svd(inv(du)[:, None] * r * inv(di)[None, :])
    v = vt[:4].T
    expected = r @ (inv(di)[:, None] * v) @ (v.T * np.sqrt(di)[None, :])
    np.testing.assert_allclose(gen.scores(np.arange(30)), expected, atol=1e-5)
    assert not gen.scores(np.array([0])).any()


def test_low_pass_on_a_catalogue_too_small_for_a_spectrum_scores_nothing() -> None:
    gen = LowPass(factors=64)
    gen.fit(sparse.csr_matrix(np.ones((1, 3), np.float32)))
    assert gen.scores(np.array([0])).shape == (1, 3) and not gen.scores(np.array([0])).any()
