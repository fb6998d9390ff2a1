"""Item-based k-nearest neighbours: cosine with shrinkage, sparse: scales to big catalogues."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training.generators.base import FloatArray, IntArray, not_fitted, self_excluding, top_n


def knn_similarity(x: sparse.csr_matrix, neighbours: int, shrink: float) -> sparse.csr_matrix:
    """items x items cosine similarity (c_ij / (|i||j| + shrink)) keeping top neighbours per row.

    Works on the sparse co-occurrence matrix only (never dense), so memory and time follow the
    number of co-occurring pairs, not n_items^2.
    """
    xc = sparse.csc_matrix(x, dtype=np.float32)
    co = sparse.csr_matrix(xc.T @ xc)
    co.setdiag(0.0)
    co.eliminate_zeros()
    co.sort_indices()
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel()).astype(np.float32)
    n_items = co.shape[0]
    rows = np.repeat(np.arange(n_items, dtype=np.int64), np.diff(co.indptr))
    cols = co.indices.astype(np.int64)
    vals = co.data / (norms[rows] * norms[cols] + shrink + 1e-9)
    order = np.lexsort((-vals, rows))  # by row, best first
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(rows.size) - np.repeat(co.indptr[:-1].astype(np.int64), np.diff(co.indptr))
    keep = (rank < neighbours) & (vals > 0)
    return sparse.csr_matrix(
        (vals[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(n_items, n_items)
    )


class ItemKNN:
    """score(u, j) = sum over u's items i of sim(i, j); sim keeps each item's top neighbours."""

    name = "item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        self.neighbours = neighbours
        self.shrink = shrink
        self.sim: sparse.csr_matrix | None = None
        self._train: sparse.csr_matrix | None = None

    def params(self) -> dict[str, float]:
        return {"neighbours": self.neighbours, "shrink": self.shrink}

    def fit(self, train: sparse.csr_matrix) -> None:
        self._train = sparse.csr_matrix(train, dtype=np.float32)
        # rows of sim = source item, columns = neighbour; scoring is x_u @ sim
        self.sim = knn_similarity(self._train, self.neighbours, self.shrink)

    def scores(self, user_codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        if self.sim is None or self._train is None:
            raise not_fitted(self.name)
        return np.asarray((self._train[np.asarray(user_codes)] @ self.sim).toarray(), np.float32)

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        if self.sim is None or self._train is None:
            raise not_fitted(self.name)
        ex = self._train if exclude is None else exclude
        return top_n(self.scores, user_codes, n, ex, self.sim.shape[0])

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        if self.sim is None:
            raise not_fitted(self.name)
        sim = self.sim
        n_items = sim.shape[0]

        def score(rows: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
            dense = sim[rows].toarray()
            dense[dense <= 0] = -np.inf  # only true neighbours
            return dense

        return top_n(score, item_codes, n, self_excluding(n_items), n_items)
