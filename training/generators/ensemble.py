"""Weighted blend of generators on per-user standardised scores.

Scores from different models live on different scales; standardising each user's row makes a
single weight per model meaningful, and the weights are chosen on validation data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training.generators.base import (
    CandidateGenerator,
    FloatArray,
    IntArray,
    fit_generator,
    not_fitted,
    top_n,
)
from training.interactions import Interactions


def standardise_rows(scores: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """(s - mean) / std per row, so one weight per model is comparable across users. Scores a
    member could not compute (NaN, infinities: e.g. from extreme weights) count as 0, so one
    broken member cannot poison the blend."""
    s = np.asarray(scores, dtype=np.float32)
    if not np.isfinite(s).all():
        s = np.where(np.isfinite(s), s, np.float32(0.0))
    mean = s.mean(axis=1, keepdims=True)
    std = s.std(axis=1, keepdims=True)
    return np.asarray((s - mean) / np.maximum(std, 1e-9), dtype=np.float32)


class Blend:
    """sum_i w_i * standardise(scores_i); the first member answers similar_items."""

    def __init__(self, members: Sequence[CandidateGenerator], weights: Sequence[float]) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("a blend needs one weight per member and at least one member")
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.name = "+".join(
            f"{m.name}*{w:g}" for m, w in zip(self.members, self.weights, strict=True)
        )
        self._train: sparse.csr_matrix | None = None

    def fit(self, train: sparse.csr_matrix, data: Interactions | None = None) -> None:
        """Fits every member on `train`; members that learn from the interactions themselves
        get `data` (the interactions `train` was built from) when it is given."""
        self._train = sparse.csr_matrix(train)
        for m in self.members:
            fit_generator(m, train, data)

    def attach(self, train: sparse.csr_matrix) -> None:
        """Use members that are already fitted on `train` (tuning fits them once)."""
        self._train = sparse.csr_matrix(train)

    def scores(self, user_codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        total: npt.NDArray[np.float32] | None = None
        for m, w in zip(self.members, self.weights, strict=True):
            if w == 0.0:
                continue
            part = w * standardise_rows(m.scores(user_codes))
            total = part if total is None else total + part
        if total is None:
            return np.zeros((np.asarray(user_codes).size, self._n_items()), np.float32)
        return total

    def _n_items(self) -> int:
        if self._train is None:
            raise not_fitted(self.name)
        return int(self._train.shape[1])

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        if self._train is None:
            raise not_fitted(self.name)
        ex = self._train if exclude is None else exclude
        return top_n(self.scores, user_codes, n, ex, self._n_items())

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        return self.members[0].similar_items(item_codes, n)
