"""Hyper-parameters chosen on a validation split within a time budget, never by hand.

Grids are expressed in scale-free terms (EASE lambda relative to the mean item count, kNN
neighbours, ALS factors/regularisation/confidence), so the same search serves any dataset.
Trials run cheapest-first in a fixed order and stop when the budget is spent.

Every trial is scored as the mean nDCG over one or more validation folds (pairs of fit/validation
matrices carved from train): one fold of ~1,000 users is noisy, so small catalogues use several.
For EASE, whose best relative regularisation moves with the amount of data, `transfer_reg`
measures that drift on nested folds (fit -> sub-fit) and extrapolates it to the final refit.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training import metrics
from training.generators.base import CandidateGenerator, fit_generator, top_n
from training.generators.ensemble import standardise_rows
from training.generators.selector import make
from training.interactions import Interactions

log = logging.getLogger(__name__)

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
    # Blend members: their own grids stay small (the blend weight decides how much each
    # counts). 64 factors was the best low-pass size on ML-100k's validation folds.
    "low_pass": [{"factors": 64}, {"factors": 128}, {"factors": 32}],
    # The EASE variants are blend members: their own grids stay small (the blend weight
    # decides how much each counts).
    "ease_centred": [{"reg_scale": 8.0}, {"reg_scale": 4.0}],
    "ease_session": [
        {"reg_scale": 2.0, "gap_seconds": 60.0},
        {"reg_scale": 0.5, "gap_seconds": 0.0},
    ],
}
BLEND_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)
BLEND_PASSES = 3  # coordinate-ascent passes over the extra members' weights
BLEND_CONTEXT_TRIALS = 3  # other settings per extra member tried inside the blend
BLEND_CONTEXT_SHARE = 0.5  # of the tuning budget, on top of it, for those trials
AUTO_BUDGET_FACTOR = 2.0
MIN_BUDGET_SECONDS = 2.0
REG_STEP = 2.0  # transfer_reg probes EASE reg_scale at this ratio around the tuned value
MAX_REG_WALK = 3
MAX_REG_SHIFT = 2.0  # transfer_reg moves reg_scale by at most this factor either way


class Fold(NamedTuple):
    """One validation fold: the fit part as a 0/1 matrix (and as interactions, for members
    that learn from weights or times) and the validation part as a 0/1 matrix."""

    fit: sparse.csr_matrix
    val: sparse.csr_matrix
    data: Interactions | None = None


@dataclass
class Trial:
    name: str
    params: dict[str, Any]
    ndcg: float
    seconds: float


@dataclass
class TuningResult:
    """Best parameters per generator, the best models fitted on the first fold, and the log."""

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


def fitted(name: str, params: dict[str, Any], fold: Fold) -> CandidateGenerator:
    """`name(params)` fitted on a fold's fit part (its interactions, for members that want them)."""
    gen = make(name, params)
    fit_generator(gen, fold.fit, fold.data)
    return gen


def folds_ndcg(
    name: str, params: dict[str, Any], folds: Sequence[Fold], k: int
) -> tuple[float, CandidateGenerator]:
    """Mean validation nDCG of `name(params)` fitted on each fold; the first fold's model."""
    scores: list[float] = []
    first: CandidateGenerator | None = None
    for fold in folds:
        gen = fitted(name, params, fold)
        scores.append(val_ndcg(gen, fold.fit, fold.val, k))
        first = gen if first is None else first
    assert first is not None
    return float(np.mean(scores)), first


def tune_generator(
    name: str,
    folds: Sequence[Fold],
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
        score, gen = folds_ndcg(name, params, folds, k)
        trials.append(Trial(name, params, score, time.perf_counter() - t0))
        if best is None or score > best[0]:
            best = (score, params, gen)
    assert best is not None
    return best[1], best[2], trials


class BlendScorer:
    """Mean validation nDCG of weighted blends, from each member's standardised scores for the
    sampled validation users, computed once per fold and member."""

    def __init__(self, members: Sequence[Sequence[CandidateGenerator]], folds: Sequence[Fold],
                 k: int = 10) -> None:
        self.k = k
        self._folds = []
        for fit_m, val_m, _ in folds:
            users = sample_users(val_m)
            self._folds.append((users, val_m[users], fit_m[users], fit_m.shape[1]))
        self.parts = [[self._part(m, f) for m in row] for f, row in enumerate(members)]

    def _part(self, member: CandidateGenerator, fold: int) -> npt.NDArray[np.float32]:
        return standardise_rows(member.scores(self._folds[fold][0]))

    def replaced(self, j: int, members: Sequence[CandidateGenerator]) -> BlendScorer:
        """The same scorer with member j replaced by `members` (one per fold)."""
        other = copy.copy(self)
        other.parts = [[*row[:j], self._part(m, f), *row[j + 1:]]
                       for f, (row, m) in enumerate(zip(self.parts, members, strict=True))]
        return other

    def score(self, w: Sequence[float]) -> float:
        values = []
        for (users, truth, exclude, n_items), parts in zip(self._folds, self.parts, strict=True):
            total = np.asarray(sum(wi * c for wi, c in zip(w, parts, strict=True) if wi))
            recs, _ = top_n(total.__getitem__, np.arange(users.size), self.k, exclude, n_items)
            values.append(metrics.ndcg_at_k(recs, truth, self.k))
        return float(np.mean(values))

    def best_weights(self, start: Sequence[float] | None = None, members: Sequence[int] = (),
                     passes: int = BLEND_PASSES) -> tuple[list[float], float]:
        """Weights of the extra members (the first stays 1) by coordinate ascent over
        BLEND_WEIGHTS, from `start` (the first member alone by default), over `members` (all
        extra ones by default)."""
        n = len(self.parts[0])
        best_w = list(start) if start is not None else [1.0] + [0.0] * (n - 1)
        best_score = self.score(best_w)
        order = list(members) or list(range(1, n))
        # One weight at a time, the others held: with one extra member that is the whole
        # grid; with more, the full grid would grow as 6^(n-1).
        for _ in range(passes if len(order) > 1 else 1):
            for j in order:
                for weight in BLEND_WEIGHTS:
                    w = [*best_w[:j], weight, *best_w[j + 1:]]
                    if w == best_w:
                        continue
                    value = self.score(w)
                    if value > best_score + 1e-6:
                        best_w, best_score = w, value
        return best_w, best_score


def tune_blend(
    members: Sequence[Sequence[CandidateGenerator]],
    folds: Sequence[Fold],
    k: int = 10,
) -> tuple[list[float], float]:
    """Weight of each extra member relative to the first (weight 1), by mean validation nDCG
    (coordinate ascent over BLEND_WEIGHTS). `members[f]` are the models fitted on fold f."""
    return BlendScorer(members, folds, k).best_weights()


def tune_in_blend(
    result: TuningResult,
    names: tuple[str, ...],
    per_fold: list[list[CandidateGenerator]],
    folds: Sequence[Fold],
    k: int = 10,
    deadline: float | None = None,
    scorer: BlendScorer | None = None,
) -> None:
    """Each extra member's other settings, judged by the blend they join instead of alone.

    Members are tuned alone but serve beside the others, and a member's best partner setting
    can differ from its best solo one (on ML-100k's stratified folds, ALS with 16 factors
    beside EASE against 32 alone; the solo search there also stops at the time budget before
    reaching 16). Up to BLEND_CONTEXT_TRIALS other grid points per member, in grid order, are
    fitted on every fold and given their best weight with the others held; whatever raises the
    blend's mean validation nDCG is kept (in `result` and `per_fold`), and the weights are
    searched again at the end. No new setting starts after `deadline`. `scorer`: the one that
    chose `result.weights` for `per_fold`, so members' scores are not computed again.
    """
    scorer = scorer or BlendScorer(per_fold, folds, k)
    weights, best = result.weights, result.blend_ndcg
    changed = False
    for j, name in enumerate(names[1:], start=1):
        others = [p for p in GRIDS[name] if p != result.best[name]]
        for params in others[:BLEND_CONTEXT_TRIALS]:
            t0 = time.perf_counter()
            if deadline is not None and t0 > deadline:
                break
            members = [fitted(name, params, fold) for fold in folds]
            candidate = scorer.replaced(j, members)
            w, value = candidate.best_weights(weights, members=(j,))
            result.trials.append(Trial(f"{name}[blend]", params, value,
                                       time.perf_counter() - t0))
            if value > best + 1e-6:
                scorer, weights, best, changed = candidate, w, value, True
                result.best[name], result.fitted[name] = params, members[0]
                for row, gen in zip(per_fold, members, strict=True):
                    row[j] = gen
    if changed:
        weights, best = scorer.best_weights(weights)
    result.weights, result.blend_ndcg = weights, best


def _peak(log_x: Sequence[float], y: Sequence[float]) -> float:
    """Arg-max (in log space) of the parabola through three equally spaced points, kept inside
    them; the best point when the curve is not concave."""
    y0, y1, y2 = y
    curvature = y0 - 2.0 * y1 + y2
    if curvature >= 0:
        return float(log_x[int(np.argmax(y))])
    offset = 0.5 * (y0 - y2) / curvature
    return float(log_x[1] + (log_x[1] - log_x[0]) * float(np.clip(offset, -1.0, 1.0)))


def _curve_peak(
    params: dict[str, Any],
    folds: Sequence[Fold],
    k: int,
    known: dict[float, float],
    level: str,
    trials: list[Trial],
) -> float:
    """Log reg_scale of the best mean validation nDCG: start from params' reg_scale and its
    REG_STEP neighbours, walk (at most MAX_REG_WALK steps) while the best point is at an end,
    then fit a parabola through the best point and its two neighbours."""

    def value(s: float) -> float:
        if s not in known:
            t0 = time.perf_counter()
            p = {**params, "reg_scale": s}
            known[s], _ = folds_ndcg("ease", p, folds, k)
            trials.append(Trial(f"ease[{level}]", p, known[s], time.perf_counter() - t0))
        return known[s]

    base = float(params["reg_scale"])
    scales = [base / REG_STEP, base, base * REG_STEP]
    for _ in range(MAX_REG_WALK + 1):
        ys = [value(s) for s in scales]
        best = int(np.argmax(ys))
        if best == 1:
            break
        scales = [s * (REG_STEP if best == 2 else 1.0 / REG_STEP) for s in scales]
    else:
        return float(np.log(scales[1]))  # still rising after the walk: stop at the last centre
    return _peak([float(np.log(s)) for s in scales], ys)


def transfer_reg(
    params: dict[str, Any],
    folds: Sequence[Fold],
    nested: Sequence[Fold],
    k: int = 10,
    known: dict[float, float] | None = None,
) -> tuple[dict[str, Any], list[Trial]]:
    """EASE reg_scale for the refit on all of train, extrapolated from how the best value moves
    between the nested level (sub-fit -> sub-validation) and the tuning level (fit -> validation).

    The best reg_scale of each level is located by a parabola in log reg_scale; its log-shift per
    log data-size step is carried one step further (fit -> train), bounded by MAX_REG_SHIFT.
    `known` holds fold-mean scores already measured at the tuning level (by reg_scale).
    """
    trials: list[Trial] = []
    peak_nested = _curve_peak(params, nested, k, {}, "nested", trials)
    peak_fit = _curve_peak(params, folds, k, dict(known or {}), "fit", trials)
    sub_nnz = float(np.mean([f.fit.nnz for f in nested]))
    fit_nnz = float(np.mean([f.fit.nnz for f in folds]))
    train_nnz = fit_nnz + float(np.mean([f.val.nnz for f in folds]))
    steps = np.log(train_nnz / fit_nnz) / max(float(np.log(fit_nnz / max(sub_nnz, 1.0))), 1e-9)
    bound = float(np.log(MAX_REG_SHIFT))
    shift = float(np.clip((peak_fit - peak_nested) * steps, -bound, bound))
    return {**params, "reg_scale": round(float(np.exp(peak_fit + shift)), 3)}, trials


def tune(
    names: tuple[str, ...],
    folds: Sequence[Fold],
    budget_seconds: float | None = None,
    k: int = 10,
    nested: Sequence[Fold] = (),
) -> TuningResult:
    """Tune each generator on the mean over `folds`, then the blend weights of the tuned models.

    The first grid point of every family always runs. With no explicit budget, the rest of
    the search gets AUTO_BUDGET_FACTOR times what those first trials cost (at least
    MIN_BUDGET_SECONDS per fold), so tuning scales with the data instead of a fixed wall-clock
    figure.
    With `nested` folds (carved from each fold's fit part), EASE's reg_scale for the final refit
    is extrapolated by `transfer_reg`; `best` then holds the refit parameters.
    """
    result = TuningResult()
    start = time.perf_counter()
    firsts: dict[str, tuple[dict[str, Any], CandidateGenerator, list[Trial]]] = {}
    for name in names:
        firsts[name] = tune_generator(name, folds, None, k, GRIDS[name][:1])
        log.info("%s's first trial %.1f s (validation nDCG@%d %.4f)", name,
                 firsts[name][2][0].seconds, k, firsts[name][2][0].ndcg)
    spent = time.perf_counter() - start
    if budget_seconds is None:
        budget_seconds = max(MIN_BUDGET_SECONDS * len(folds), AUTO_BUDGET_FACTOR * spent)
    remaining = max(budget_seconds - spent, 0.0)
    log.info("%d families on %d fold(s), %.0f s budget", len(names), len(folds),
             budget_seconds)
    share = remaining / max(len(names), 1)
    for name in names:
        deadline = time.perf_counter() + share
        params, gen, trials = firsts[name]
        best_score = trials[0].ndcg
        if share > 0 and len(GRIDS[name]) > 1:
            p2, g2, t2 = tune_generator(name, folds, deadline, k, GRIDS[name][1:])
            trials = trials + t2
            if max(t.ndcg for t in t2) > best_score:
                params, gen = p2, g2
        result.best[name] = params
        result.fitted[name] = gen
        result.trials.extend(trials)
        log.info("%s: %d trial(s), best %s", name, len(trials), params)
    per_fold: list[list[CandidateGenerator]] = [[result.fitted[n] for n in names]]
    per_fold += [[fitted(n, result.best[n], fold) for n in names] for fold in folds[1:]]
    scorer = BlendScorer(per_fold, folds, k)  # members' validation scores, computed once
    result.weights, result.blend_ndcg = scorer.best_weights()
    log.info("blend weights %s (validation nDCG@%d %.4f)", result.weights, k,
             result.blend_ndcg)
    if len(folds) > 1:  # one fold's noise (about ±0.005) is larger than what this finds
        deadline = time.perf_counter() + BLEND_CONTEXT_SHARE * budget_seconds
        tune_in_blend(result, names, per_fold, folds, k, deadline, scorer)
    if nested and "ease" in names and "reg_scale" in result.best["ease"]:
        same_w = {
            float(t.params["reg_scale"]): t.ndcg
            for t in result.trials
            if t.name == "ease"
            and t.params.get("user_weight") == result.best["ease"].get("user_weight")
        }
        result.best["ease"], extra = transfer_reg(result.best["ease"], folds, nested, k, same_w)
        result.trials.extend(extra)
    return result
