"""Second-stage re-ranker: a line plus gradient-boosted trees over (user, candidate) features,
exported to ONNX.

Trained on candidates from models fitted on the fit split, labelled by the validation split.
It is kept only when it beats the generator's own order on validation users it did not see
(a gate), so a re-ranker never makes a published model worse offline.

A least-squares regressor on the 0/1 labels, not a classifier: ranking needs only the order, and
its ONNX graph (a MatMul and one TreeEnsembleRegressor, no label or probability outputs) is
cheaper per request. Its size is a cost decision: request-time ONNX time grows with the number
of trees, and `python -m bench.quality.reranker_shapes` prints, per shape, the validation gain
(paired against the default, over many held-out halves) and the ONNX time per 100 candidates.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from shared.reranking.features import FEATURES, ItemTable, build_features, window_counts
from training import metrics
from training.generators.base import CandidateGenerator, IntArray
from training.interactions import Interactions
from training.tuning import sample_users

HISTORY = 20  # recent items per user the features look at
WINDOW_DAYS = 14.0
BIN_SECONDS = 86400.0
MONOTONIC = {"score": 1, "score_gap": 1, "score_z": 1, "rank_frac": -1}
# One OpenMP thread: on ~1e5 rows the trees are fast anyway, while OpenMP spin-waiting on a busy
# machine (other processes, a Function host) made fits 5-10x slower than single-threaded.
OPENMP_THREADS = 1


@dataclass(frozen=True)
class Context:
    """Everything about train data the features need, computed once per split."""

    items: ItemTable
    now: npt.NDArray[np.float64]  # per user: last train timestamp
    n_user: npt.NDArray[np.float64]
    history: npt.NDArray[np.int64]  # users x HISTORY, most recent first, -1 padded
    cum_hist: npt.NDArray[np.float64]  # items x day bins, cumulative counts
    t0: float


def build_context(
    train: Interactions, categories: npt.NDArray[np.float32] | None = None
) -> Context:
    """Per-item statistics, per-user reference time and recent history from a train split."""
    n_items, n_users = train.n_items, train.n_users
    ts = train.timestamps.astype(np.float64)
    pop = np.bincount(train.items, minlength=n_items).astype(np.float32)
    t_max = float(ts.max()) if ts.size else 0.0
    first = np.full(n_items, np.inf)
    np.minimum.at(first, train.items, ts)
    first[~np.isfinite(first)] = t_max
    last = np.zeros(n_items)
    np.maximum.at(last, train.items, ts)
    wsum = np.bincount(train.items, train.weights, minlength=n_items)
    cats = (
        np.zeros((n_items, 0), np.float32)
        if categories is None
        else np.asarray(categories, np.float32)
    )
    items = ItemTable(pop, first, last, (wsum / np.maximum(pop, 1)).astype(np.float32), cats)
    now = np.zeros(n_users)
    np.maximum.at(now, train.users, ts)
    n_user = np.bincount(train.users, minlength=n_users).astype(np.float64)
    order = np.lexsort((-ts, train.users))
    su, si = train.users[order], train.items[order]
    pos = np.arange(su.size) - np.searchsorted(su, su)
    keep = pos < HISTORY
    history = np.full((n_users, HISTORY), -1, np.int64)
    history[su[keep], pos[keep]] = si[keep]
    t0 = float(ts.min()) if ts.size else 0.0
    bins = ((ts - t0) // BIN_SECONDS).astype(np.int64)
    n_bins = int(bins.max()) + 1 if bins.size else 1
    hist = sparse.csr_matrix(
        (np.ones(bins.size), (train.items, bins)), shape=(n_items, n_bins)
    ).toarray()
    return Context(items, now, n_user, history, np.cumsum(hist, axis=1), t0)


def candidate_features(
    gen: CandidateGenerator,
    users: npt.NDArray[np.int64],
    ctx: Context,
    n_candidates: int,
    exclude: sparse.csr_matrix,
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """Top candidates of `gen` for users and their feature rows (users*candidates x features)."""
    cand, scores = gen.recommend(users, n_candidates, exclude=exclude)
    wpop = window_counts(ctx.cum_hist, ctx.t0, BIN_SECONDS, cand, ctx.now[users], WINDOW_DAYS)
    feats = build_features(
        cand, scores, wpop, ctx.items, ctx.history[users], ctx.n_user[users], ctx.now[users]
    )
    return cand, feats


def labels(
    cand: IntArray, users: npt.NDArray[np.int64], truth: sparse.csr_matrix
) -> npt.NDArray[np.bool_]:
    """1 when the candidate is among the user's held-out items."""
    rows = np.repeat(users, cand.shape[1])
    cols = np.clip(cand.ravel(), 0, None)
    return (np.asarray(truth[rows, cols]).ravel() > 0) & (cand.ravel() >= 0)


class Shape(NamedTuple):
    trees: int
    leaves: int
    learning_rate: float
    linear: bool = False  # a ridge line first, the trees on its residuals

    def __str__(self) -> str:
        line = "line+" if self.linear else ""
        return f"{line}{self.trees}x{self.leaves}@{self.learning_rate:g}"


def shape_arg(text: str) -> Shape:
    """An argparse type: '15x8@0.4' -> 15 trees of 8 leaves, learning rate 0.4; a 'line+'
    prefix fits a line first and the trees on its residuals."""
    linear = text.startswith("line+")
    try:
        size, rate = text.removeprefix("line+").split("@")
        trees, leaves = size.split("x")
        return Shape(int(trees), int(leaves), float(rate), linear)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}': expected TREESxLEAVES@RATE, optionally prefixed with 'line+'"
        ) from None


# On ML-100k's temporal validation, a line plus 15 trees gains more nDCG@10 than 30 trees alone
# (paired over 16 held-out halves) at about 60% of their ONNX time per candidate; fewer trees
# lose gain (bench/quality/README.md).
DEFAULT_SHAPE = Shape(trees=15, leaves=8, learning_rate=0.2, linear=True)


class LineAndTrees:
    """A ridge line through the features, then boosted trees fitted to what it leaves.

    Most of what the re-ranker learns is monotone trends (a higher blend score, a more popular
    item) that a line fits with one weight each and trees only with many splits; the trees then
    spend their splits on the rest. scikit-learn's boosting cannot start from a fitted
    estimator in a form skl2onnx exports, so the two parts are fitted here and joined in the
    ONNX graph (`to_onnx`).
    """

    def __init__(self, trees: HistGradientBoostingRegressor, linear: bool) -> None:
        self.trees = trees
        self.linear = linear
        self.coef = np.zeros(len(FEATURES), np.float32)  # per raw feature (scaling folded in)
        self.intercept = 0.0

    def fit(self, x: npt.NDArray[np.float32], y: npt.NDArray[np.float32]) -> LineAndTrees:
        target = np.asarray(y, np.float64)
        with threadpool_limits(limits=OPENMP_THREADS, user_api="openmp"):
            if self.linear:
                scaler = StandardScaler().fit(x)
                ridge = Ridge(alpha=1.0).fit(scaler.transform(x), target)
                self.coef = (ridge.coef_ / scaler.scale_).astype(np.float32)
                self.intercept = float(ridge.intercept_ - self.coef @ scaler.mean_)
            self.trees.fit(x, target - self._line(x))
        return self

    def _line(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        return np.asarray(x @ self.coef, np.float64) + self.intercept

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        with threadpool_limits(limits=OPENMP_THREADS, user_api="openmp"):
            return self._line(x) + np.asarray(self.trees.predict(x), np.float64)


def new_model(seed: int = 0, shape: Shape = DEFAULT_SHAPE) -> LineAndTrees:
    """Few small, regularised trees (after a line, if the shape says so): they train in seconds
    and score 100 candidates in tens of microseconds at request time."""
    cst = [MONOTONIC.get(name, 0) for name in FEATURES]
    trees = HistGradientBoostingRegressor(
        max_iter=shape.trees,
        learning_rate=shape.learning_rate,
        max_leaf_nodes=shape.leaves,
        min_samples_leaf=100,
        l2_regularization=1.0,
        monotonic_cst=cst,
        early_stopping=False,
        random_state=seed,
    )
    return LineAndTrees(trees, shape.linear)


def fitted_model(feats: npt.NDArray[np.float32], labels: npt.NDArray[np.bool_], seed: int = 0,
                 shape: Shape = DEFAULT_SHAPE) -> LineAndTrees:
    """`new_model` fitted on 0/1 labels, on one OpenMP thread (see OPENMP_THREADS)."""
    return new_model(seed, shape).fit(feats, labels.astype(np.float32))


def reorder(
    model: LineAndTrees, cand: IntArray, feats: npt.NDArray[np.float32]
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """Candidates sorted by re-ranker score (padding stays last)."""
    p = model.predict(feats).reshape(cand.shape).astype(np.float32)
    p[cand < 0] = -1.0
    order = np.argsort(-p, axis=1, kind="stable")
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(p, order, axis=1)


@dataclass
class RerankerFit:
    model: LineAndTrees | None  # None: the gate rejected it
    base_ndcg: float
    reranked_ndcg: float


class TrainingRows(NamedTuple):
    """Validation users' candidates from the blend fitted on `fit`, their features and labels."""

    users: npt.NDArray[np.int64]
    cand: IntArray  # users x n_candidates
    feats: npt.NDArray[np.float32]  # users*n_candidates x features
    labels: npt.NDArray[np.bool_]
    truth: sparse.csr_matrix  # validation 0/1 matrix, all users


def training_rows(
    gen_on_fit: CandidateGenerator,
    fit: Interactions,
    val: Interactions,
    categories: npt.NDArray[np.float32] | None,
    n_candidates: int = 50,
    seed: int = 0,
    max_users: int = 2000,
) -> TrainingRows:
    ctx = build_context(fit, categories)
    val_m = val.matrix(binary=True)
    users = sample_users(val_m, max_users=max_users, seed=seed)
    cand, feats = candidate_features(gen_on_fit, users, ctx, n_candidates, fit.matrix(binary=True))
    return TrainingRows(users, cand, feats, labels(cand, users, val_m), val_m)


def held_out_gain(
    rows: TrainingRows, half: npt.NDArray[np.bool_], k: int, seed: int = 0,
    shape: Shape = DEFAULT_SHAPE,
) -> tuple[float, float] | None:
    """(nDCG@k of the blend's order, of the re-ranked order) on the users outside `half`, for
    a model trained on the users in it; None when either side has no positive label."""
    rows_a = np.repeat(half, rows.cand.shape[1])
    y = rows.labels
    if y[rows_a].sum() == 0 or y[~rows_a].sum() == 0:
        return None
    probe = fitted_model(rows.feats[rows_a], y[rows_a], seed, shape)
    truth_b = rows.truth[rows.users[~half]]
    base = metrics.ndcg_at_k(rows.cand[~half], truth_b, k)
    reranked, _ = reorder(probe, rows.cand[~half], rows.feats[~rows_a])
    return base, metrics.ndcg_at_k(reranked, truth_b, k)


def train_reranker(
    rows: TrainingRows,
    k: int = 10,
    min_gain: float = 0.005,
    seed: int = 0,
    shape: Shape = DEFAULT_SHAPE,
) -> RerankerFit:
    """Train on half the validation users, gate on the other half, then refit on all of them."""
    half = np.random.default_rng(seed).random(rows.users.size) < 0.5
    scored = held_out_gain(rows, half, k, seed, shape)
    if scored is None:
        return RerankerFit(None, 0.0, 0.0)
    base, gain = scored
    if gain < base + min_gain:
        return RerankerFit(None, base, gain)
    return RerankerFit(fitted_model(rows.feats, rows.labels, seed, shape), base, gain)


def to_onnx(model: LineAndTrees) -> bytes:
    """ONNX bytes with a float input 'features' (n x len(FEATURES)) and one score column: the
    trees as skl2onnx exports them, plus the line (one MatMul) added to their output."""
    from onnx import helper, numpy_helper
    from skl2onnx import to_onnx as _to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = _to_onnx(
        model.trees,
        initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    if model.linear:
        graph = onx.graph
        score = graph.output[0].name
        for node in graph.node:
            node.output[:] = ["trees" if name == score else name for name in node.output]
        graph.initializer.extend([
            numpy_helper.from_array(model.coef.reshape(-1, 1), "line_coef"),
            numpy_helper.from_array(np.array([model.intercept], np.float32), "line_intercept"),
        ])
        graph.node.extend([
            helper.make_node("MatMul", ["features", "line_coef"], ["line"]),
            helper.make_node("Add", ["line", "line_intercept"], ["line_total"]),
            helper.make_node("Add", ["trees", "line_total"], [score]),
        ])
    return bytes(onx.SerializeToString())
