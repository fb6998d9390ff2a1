"""The one interface every candidate generator implements, and the batched top-n they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training.interactions import Interactions

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]
ScoreFn = Callable[[npt.NDArray[np.integer]], npt.NDArray[np.floating]]


@runtime_checkable
class Recommender(Protocol):
    """Anything that returns top-n lists (generators, blends, the full pipeline)."""

    name: str

    def recommend(
        self,
        user_codes: npt.NDArray[np.integer],
        n: int,
        exclude: sparse.csr_matrix | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top-n item codes per user (users x n, -1 padded) with float32 scores."""
        ...


@runtime_checkable
class CandidateGenerator(Protocol):
    """Fits on a users x items matrix of train codes; recommends item codes for user codes."""

    name: str

    def fit(self, train: sparse.csr_matrix) -> None:
        """Learn from the (weighted or binary) interaction matrix."""
        ...

    def scores(self, user_codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        """Dense len(user_codes) x n_items scores (callers chunk users); used by blends."""
        ...

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top-n item codes per user (users x n, -1 padded) with float32 scores.

        `exclude` is a users x items matrix (rows indexed by user code); its non-zeros are never
        returned. None means exclude the items the user had in the fitted train matrix.
        """
        ...

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        """Top-n most similar items per item (the item itself excluded)."""
        ...


@runtime_checkable
class FitsInteractions(Protocol):
    """A generator that learns from the interactions themselves (weights, times), not only
    from the users x items matrix."""

    def fit_interactions(self, data: Interactions) -> None: ...


def fit_generator(gen: CandidateGenerator, matrix: sparse.csr_matrix,
                  data: Interactions | None = None) -> None:
    """`gen.fit(matrix)`, or `gen.fit_interactions(data)` for generators that want them."""
    if data is not None and isinstance(gen, FitsInteractions):
        gen.fit_interactions(data)
    else:
        gen.fit(matrix)


def top_n(
    score_rows: ScoreFn,
    rows: npt.NDArray[np.integer],
    n: int,
    exclude: sparse.csr_matrix | None,
    n_items: int,
    chunk: int = 1024,
) -> tuple[IntArray, FloatArray]:
    """Batched top-n: score a chunk of rows as one matrix op, mask excluded, argpartition.

    `score_rows(rows)` returns a dense len(rows) x n_items array; `exclude` rows are indexed by
    the same row codes. Masked or non-finite scores never appear; short lists are -1 padded.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_out = max(int(n), 0)
    out_items = np.full((rows.size, n_out), -1, dtype=np.int32)
    out_scores = np.zeros((rows.size, n_out), dtype=np.float32)
    if n_out == 0 or rows.size == 0 or n_items == 0:
        return out_items, out_scores
    k = min(n_out, n_items)
    ex = sparse.csr_matrix(exclude) if exclude is not None else None
    for lo in range(0, rows.size, chunk):
        batch = rows[lo : lo + chunk]
        scores = np.array(score_rows(batch), dtype=np.float32, copy=True)
        scores[~np.isfinite(scores)] = -np.inf
        if ex is not None:
            sub = ex[batch]
            r, c = sub.nonzero()
            scores[r, c] = -np.inf
        if k < n_items:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_items), (batch.size, n_items)).copy()
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        best_scores = np.take_along_axis(part_scores, order, axis=1)
        valid = np.isfinite(best_scores)
        out_items[lo : lo + batch.size, :k] = np.where(valid, best, -1)
        out_scores[lo : lo + batch.size, :k] = np.where(valid, best_scores, 0.0)
    return out_items, out_scores


def self_excluding(n_items: int) -> sparse.csr_matrix:
    """An exclude matrix (rows = item codes) that hides each item from its own similar list."""
    return sparse.identity(n_items, dtype=np.float32, format="csr")


def not_fitted(name: str) -> RuntimeError:
    """One message for calling recommend before fit."""
    return RuntimeError(f"{name}: call fit() before recommending")
