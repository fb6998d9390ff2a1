"""The project's default recommendation pipeline: select, tune, blend, re-rank.

1. carve validation folds from train (same protocol as the evaluation; several folds with
   different seeds when the catalogue is small enough for that to stay cheap),
2. pick model families by catalogue size/memory (`selector.choose`),
3. tune each family and the blend weights on the mean over the folds within a time budget
   (EASE's regularisation for the refit is extrapolated from nested folds; with several folds
   the extra members' other settings are also judged inside the blend, see `tuning`),
4. train a re-ranker on validation labels (kept only if it beats the blend on held-out users),
5. refit the chosen models on all of train.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training import reranker, tuning
from training.generators.base import FloatArray, IntArray, not_fitted
from training.generators.ensemble import Blend
from training.generators.selector import DEFAULT_MEMORY_BUDGET, choose, make
from training.interactions import Interactions
from training.splits import validation_split

log = logging.getLogger(__name__)

MULTI_FOLD_MAX_ITEMS = 5000  # above this a trial is costly: tune on one fold only
MULTI_FOLD_MAX_INTERACTIONS = 2_000_000


@dataclass
class PipelineConfig:
    protocol: str = "stratified"  # how validation is carved out of train
    val_fraction: float = 0.2
    budget_seconds: float | None = None  # tuning budget; None scales with first-trial cost
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    rerank: bool = True
    reranker_shape: reranker.Shape = reranker.DEFAULT_SHAPE  # its size: request-time cost
    n_candidates: int = 50
    k: int = 10
    seed: int = 7
    folds: int = 3  # validation folds when the data is small (stratified protocol only)


@dataclass
class PipelineReport:
    plan: str = ""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)
    val_ndcg: float = 0.0
    reranker: str = "off"
    trials: list[tuple[str, dict[str, Any], float, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class TunedBlend(NamedTuple):
    members: tuple[str, ...]
    on_fit: Blend  # tuned, fitted on `fit` (the first validation fold's fit part)
    fit: Interactions
    val: Interactions


def _varies(values: npt.NDArray[np.generic]) -> bool:
    """Whether a column carries information (ratings or event weights, real timestamps)."""
    return values.size > 1 and bool((values != values.flat[0]).any())


class DefaultPipeline:
    """Fits on train Interactions; recommends like any CandidateGenerator afterwards."""

    name = "default"

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.report = PipelineReport()
        self.blend: Blend | None = None
        self.model: Any = None  # fitted re-ranker or None
        self._ctx: reranker.Context | None = None
        self._train: sparse.csr_matrix | None = None

    def tune(self, train: Interactions) -> TunedBlend:
        """Steps 1-3: the blend tuned on validation, fitted on the first fold's fit part (what
        the re-ranker learns to re-order). Fills the report's plan, parameters and weights."""
        return self._tune(train.one_row_per_pair())

    def _tune(self, train: Interactions) -> TunedBlend:
        """`tune` on interactions that already have one row per (user, item)."""
        cfg = self.config
        fit, val = validation_split(train, cfg.protocol, cfg.val_fraction, cfg.seed)
        plan = choose(train.n_items, cfg.memory_budget, weighted=_varies(train.weights),
                      timed=_varies(train.timestamps))
        self.report.plan = plan.reason
        log.info("plan: %s", plan.reason)
        folds, nested = self._folds(train, fit, val)
        tuned = tuning.tune(plan.members, folds, cfg.budget_seconds, cfg.k, nested)
        self.report.params = tuned.best
        self.report.weights = tuned.weights
        self.report.val_ndcg = tuned.blend_ndcg
        self.report.trials = [
            (t.name, t.params, round(t.ndcg, 4), round(t.seconds, 2)) for t in tuned.trials
        ]
        on_fit = Blend([tuned.fitted[n] for n in plan.members], tuned.weights)
        on_fit.attach(folds[0].fit)
        return TunedBlend(plan.members, on_fit, fit, val)

    def fit(self, train: Interactions, categories: npt.NDArray[np.float32] | None = None) -> None:
        cfg = self.config
        train = train.one_row_per_pair()
        t0 = time.perf_counter()
        tuned = self._tune(train)
        t1 = time.perf_counter()
        self.report.seconds["tune"] = t1 - t0
        self.model = None
        if cfg.rerank:
            log.info("re-ranker: training %s on the validation users", cfg.reranker_shape)
            rows = reranker.training_rows(tuned.on_fit, tuned.fit, tuned.val, categories,
                                          cfg.n_candidates, cfg.seed)
            rr = reranker.train_reranker(rows, cfg.k, seed=cfg.seed, shape=cfg.reranker_shape)
            self.model = rr.model
            verdict = "kept" if rr.model is not None else "rejected"
            self.report.reranker = (
                f"{verdict} (val nDCG {rr.base_ndcg:.4f} -> {rr.reranked_ndcg:.4f})"
            )
            log.info("re-ranker: %s", self.report.reranker)
        t2 = time.perf_counter()
        self.report.seconds["rerank"] = t2 - t1
        members = [make(n, self.report.params[n]) for n in tuned.members]
        log.info("refit: %s on all %d interactions", ", ".join(tuned.members), len(train))
        self._train = train.matrix(binary=True)
        self.blend = Blend(members, self.report.weights)
        self.blend.fit(self._train, train)
        self._ctx = reranker.build_context(train, categories) if self.model is not None else None
        self.report.seconds["refit"] = time.perf_counter() - t2

    def _folds(
        self, train: Interactions, fit: Interactions, val: Interactions
    ) -> tuple[list[tuning.Fold], list[tuning.Fold]]:
        """Validation folds (the first is `fit`/`val`) and, with several folds, nested folds
        carved the same way from each fold's fit part (for EASE's refit regularisation).

        Extra folds use other seeds of the stratified split; the temporal split has one answer,
        and large data sets keep one fold so tuning cost stays proportional to a single fit.
        """
        cfg = self.config
        small = train.n_items <= MULTI_FOLD_MAX_ITEMS and len(train) <= MULTI_FOLD_MAX_INTERACTIONS
        n_folds = max(1, cfg.folds) if small and cfg.protocol == "stratified" else 1
        parts = [(fit, val)]
        for i in range(1, n_folds):
            parts.append(validation_split(train, cfg.protocol, cfg.val_fraction, cfg.seed + i))
        folds = [tuning.Fold(f.matrix(binary=True), v.matrix(binary=True), f) for f, v in parts]
        nested: list[tuning.Fold] = []
        if n_folds > 1:  # one fold is too noisy to extrapolate a trend from
            for i, (f, _) in enumerate(parts):
                sub_fit, sub_val = validation_split(f, cfg.protocol, cfg.val_fraction, cfg.seed + i)
                nested.append(tuning.Fold(sub_fit.matrix(binary=True),
                                          sub_val.matrix(binary=True), sub_fit))
        return folds, nested

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        if self.blend is None or self._train is None:
            raise not_fitted(self.name)
        ex = self._train if exclude is None else exclude
        users = np.asarray(user_codes, dtype=np.int64)
        if self.model is None or self._ctx is None:
            return self.blend.recommend(users, n, ex)
        width = max(n, self.config.n_candidates)
        cand, feats = reranker.candidate_features(self.blend, users, self._ctx, width, ex)
        items, scores = reranker.reorder(self.model, cand, feats)
        return items[:, :n], scores[:, :n]

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        if self.blend is None:
            raise not_fitted(self.name)
        return self.blend.similar_items(item_codes, n)
