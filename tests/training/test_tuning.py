import numpy as np
from scipy import sparse

from training import tuning


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
