from typing import cast

import numpy as np
from scipy import sparse

from training import tuning
from training.generators.base import CandidateGenerator


def _fold(seed: int) -> tuning.Fold:
    rng = np.random.default_rng(seed)
    x = sparse.csr_matrix((rng.random((60, 30)) < 0.3).astype(np.float32))
    mask = sparse.csr_matrix((rng.random((60, 30)) < 0.2).astype(np.float32))
    val = x.multiply(mask).tocsr()
    fit = (x - val).tocsr()
    fit.eliminate_zeros()
    val.eliminate_zeros()
    return tuning.Fold(fit, val)


def test_peak_of_parabola_and_edges() -> None:
    assert tuning._peak([0.0, 1.0, 2.0], [0.0, 1.0, 0.0]) == 1.0
    assert 1.0 < tuning._peak([0.0, 1.0, 2.0], [0.0, 1.0, 0.5]) < 2.0
    assert tuning._peak([0.0, 1.0, 2.0], [0.0, 1.0, 3.0]) == 2.0  # not concave: best point


def test_multi_fold_tuning_and_bounded_reg_transfer() -> None:
    folds = [_fold(1), _fold(2)]
    nested = [_fold(3), _fold(4)]
    res = tuning.tune(("ease",), folds, budget_seconds=1.0, nested=nested)
    assert res.weights == [1.0]
    reg = res.best["ease"]["reg_scale"]
    tuned = [t.params["reg_scale"] for t in res.trials if t.name == "ease"]
    assert min(tuned) / tuning.MAX_REG_SHIFT / 8 <= reg <= max(tuned) * tuning.MAX_REG_SHIFT * 8
    assert any(t.name == "ease[nested]" for t in res.trials)


class _Fixed:
    """A generator whose scores are given: the blend-context search only reads scores."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self._scores = scores

    def fit(self, matrix: sparse.csr_matrix) -> None:
        pass

    def scores(self, users: np.ndarray) -> np.ndarray:
        return self._scores[users]


def _fixed(scores: np.ndarray) -> CandidateGenerator:
    return cast(CandidateGenerator, _Fixed(scores))


def _complementary_fold(n_users: int = 40, n_items: int = 30) -> tuple[tuning.Fold, dict]:
    """Each user's held-out items are 0-7; the first member finds 0-3, a 'twin' setting finds
    the same (as good alone), a 'partner' setting finds 4-7 (as good alone, better beside it)."""
    rng = np.random.default_rng(0)
    val = sparse.csr_matrix(np.tile((np.arange(n_items) < 8).astype(np.float32), (n_users, 1)))
    fit = sparse.csr_matrix((n_users, n_items), dtype=np.float32)
    noise = rng.random((n_users, n_items)) * 0.1
    first = noise + (np.arange(n_items) < 4)
    partner = noise[:, ::-1] + ((np.arange(n_items) >= 4) & (np.arange(n_items) < 8))
    settings = {"twin": first + 0.01 * rng.random((n_users, n_items)), "partner": partner}
    return tuning.Fold(fit, val), {"first": first, **settings}


def test_an_extra_member_keeps_the_setting_that_helps_the_blend_most(monkeypatch) -> None:
    fold, scores = _complementary_fold()
    folds = [fold, fold]
    grid = [{"setting": "twin"}, {"setting": "partner"}]
    monkeypatch.setitem(tuning.GRIDS, "fixed", grid)
    monkeypatch.setattr(tuning, "make", lambda name, params: _Fixed(scores[params["setting"]]))
    result = tuning.TuningResult(best={"first": {}, "fixed": grid[0]})
    per_fold = [[_fixed(scores["first"]), _fixed(scores["twin"])] for _ in folds]
    result.weights, result.blend_ndcg = tuning.tune_blend(per_fold, folds, k=8)
    alone_best = result.blend_ndcg

    tuning.tune_in_blend(result, ("first", "fixed"), per_fold, folds, k=8)

    assert result.best["fixed"] == {"setting": "partner"}
    assert result.blend_ndcg > alone_best + 0.1 and result.weights[1] > 0
    assert [t.name for t in result.trials] == ["fixed[blend]"]
    assert all(cast(_Fixed, row[1])._scores is scores["partner"] for row in per_fold)


def test_no_blend_context_trial_starts_after_the_deadline(monkeypatch) -> None:
    fold, scores = _complementary_fold()
    grid = [{"setting": "twin"}, {"setting": "partner"}]
    monkeypatch.setitem(tuning.GRIDS, "fixed", grid)
    monkeypatch.setattr(tuning, "make", lambda name, params: _Fixed(scores[params["setting"]]))
    result = tuning.TuningResult(best={"first": {}, "fixed": grid[0]}, weights=[1.0, 0.0])
    per_fold = [[_fixed(scores["first"]), _fixed(scores["twin"])]]
    tuning.tune_in_blend(result, ("first", "fixed"), per_fold, [fold], k=8, deadline=0.0)
    assert result.best["fixed"] == {"setting": "twin"} and result.trials == []
