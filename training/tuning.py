"""Hyper-parameters chosen on a validation split within a time budget, never by hand.

Grids are expressed in scale-free terms (EASE lambda relative to the mean item count, kNN
neighbours, ALS factors/regularisation/confidence), so the same search serves any dataset.
Trials run cheapest-first in a fixed order and stop when the budget is spent.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training import metrics
from training.generators.base import CandidateGenerator, top_n
from training.generators.ensemble import standardise_rows
from training.generators.selector import make

GRIDS: dict[str, list[dict[str, Any]]] = {
    # user_weight: Gram built from X' diag(n_u^-w) X (see EASE); cheap, so both axes are searched
    "ease": [
        {"reg_scale": s, "user_weight": w}
        for s, w in (
            (8.0, 0.0),
            (8.0, 0.25),
            (4.0, 0.0),
            (16.0, 0.25),
            (16.0, 0.0),
            (4.0, 0.25),
            (16.0, 0.5),
            (12.0, 0.0),
            (2.0, 0.0),
            (1.0, 0.0),
        )
    ],
    "item_knn": [
        {"neighbours": k, "shrink": s}
        for k, s in ((100, 10.0), (50, 10.0), (200, 10.0), (100, 50.0), (20, 0.0))
    ],
    "als": [
        {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
        for f, a, r in (
            (32, 5.0, 0.1),
            (64, 5.0, 0.1),
            (32, 20.0, 0.1),
            (16, 5.0, 0.1),
            (64, 1.0, 0.01),
            (128, 5.0, 1.0),
        )
    ],
}
BLEND_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)
AUTO_BUDGET_FACTOR = 2.0
MIN_BUDGET_SECONDS = 2.0


@dataclass
class Trial:
    name: str
    params: dict[str, Any]
    ndcg: float
    seconds: float


@dataclass
class TuningResult:
    """Best parameters per generator, the fitted best models on the fit split, and the log."""

    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    fitted: dict[str, CandidateGenerator] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)
    blend_ndcg: float = 0.0
    trials: list[Trial] = field(default_factory=list)


def sample_users(
    val_m: sparse.csr_matrix, max_users: int = 2000, max_cells: int = 10_000_000, seed: int = 0
) -> npt.NDArray[np.int64]:
    """Validation users to score: all with validation items, capped so dense scores stay small."""
    users = np.flatnonzero(np.diff(val_m.indptr) > 0).astype(np.int64)
    cap = max(100, min(max_users, max_cells // max(val_m.shape[1], 1)))
    if users.size <= cap:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, cap, replace=False))


def val_ndcg(
    gen: CandidateGenerator, fit_m: sparse.csr_matrix, val_m: sparse.csr_matrix, k: int
) -> float:
    """nDCG@k on (a sample of) the validation users."""
    users = sample_users(val_m)
    recs, _ = gen.recommend(users, k, exclude=fit_m)
    return metrics.ndcg_at_k(recs, val_m[users], k)


def tune_generator(
    name: str,
    fit_m: sparse.csr_matrix,
    val_m: sparse.csr_matrix,
    deadline: float | None,
    k: int = 10,
    grid: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], CandidateGenerator, list[Trial]]:
    """Try the grid for `name` in order until the deadline (the first trial always runs)."""
    trials: list[Trial] = []
    best: tuple[float, dict[str, Any], CandidateGenerator] | None = None
    for params in GRIDS[name] if grid is None else grid:
        if best is not None and deadline is not None and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        gen = make(name, params)
        gen.fit(fit_m)
        score = val_ndcg(gen, fit_m, val_m, k)
        trials.append(Trial(name, params, score, time.perf_counter() - t0))
        if best is None or score > best[0]:
            best = (score, params, gen)
    assert best is not None
    return best[1], best[2], trials


def tune_blend(
    members: list[CandidateGenerator],
    fit_m: sparse.csr_matrix,
    val_m: sparse.csr_matrix,
    k: int = 10,
) -> tuple[list[float], float]:
    """Weight of each extra member relative to the first (weight 1), by validation nDCG.

    Member scores for the sampled users are computed once; each weight vector is then one
    weighted sum and one top-k.
    """
    users = sample_users(val_m)
    truth = val_m[users]
    cached = [standardise_rows(m.scores(users)) for m in members]
    exclude = fit_m[users]

    def score(w: list[float]) -> float:
        total = sum(wi * c for wi, c in zip(w, cached, strict=True))
        recs, _ = top_n(
            lambda rows: np.asarray(total)[rows], np.arange(users.size), k, exclude, fit_m.shape[1]
        )
        return metrics.ndcg_at_k(recs, truth, k)

    best_w = [1.0] + [0.0] * (len(members) - 1)
    best_score = score(best_w)
    for combo in itertools.product(BLEND_WEIGHTS, repeat=len(members) - 1):
        if not any(combo):
            continue
        w = [1.0, *combo]
        value = score(w)
        if value > best_score + 1e-6:
            best_w, best_score = w, value
    return best_w, best_score


def tune(
    names: tuple[str, ...],
    fit_m: sparse.csr_matrix,
    val_m: sparse.csr_matrix,
    budget_seconds: float | None = None,
    k: int = 10,
) -> TuningResult:
    """Tune each generator, then the blend weights of the tuned models.

    The first grid point of every family always runs. With no explicit budget, the rest of
    the search gets AUTO_BUDGET_FACTOR times what those first trials cost (at least
    MIN_BUDGET_SECONDS), so tuning scales with the data instead of a fixed wall-clock figure.
    """
    result = TuningResult()
    start = time.perf_counter()
    firsts: dict[str, tuple[dict[str, Any], CandidateGenerator, list[Trial]]] = {}
    for name in names:
        firsts[name] = tune_generator(name, fit_m, val_m, None, k, GRIDS[name][:1])
    spent = time.perf_counter() - start
    if budget_seconds is None:
        budget_seconds = max(MIN_BUDGET_SECONDS, AUTO_BUDGET_FACTOR * spent)
    remaining = max(budget_seconds - spent, 0.0)
    share = remaining / max(len(names), 1)
    for name in names:
        deadline = time.perf_counter() + share
        params, gen, trials = firsts[name]
        best_score = trials[0].ndcg
        if share > 0 and len(GRIDS[name]) > 1:
            p2, g2, t2 = tune_generator(name, fit_m, val_m, deadline, k, GRIDS[name][1:])
            trials = trials + t2
            if max(t.ndcg for t in t2) > best_score:
                params, gen = p2, g2
        result.best[name] = params
        result.fitted[name] = gen
        result.trials.extend(trials)
    members = [result.fitted[n] for n in names]
    result.weights, result.blend_ndcg = tune_blend(members, fit_m, val_m, k)
    return result
