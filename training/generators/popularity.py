"""Most-popular items: the baseline every model must beat, and the cold-start answer."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training.generators.base import FloatArray, IntArray, not_fitted, top_n


class Popularity:
    """Scores every item by how many users interacted with it in train."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts: npt.NDArray[np.float32] | None = None
        self._train: sparse.csr_matrix | None = None

    def fit(self, train: sparse.csr_matrix) -> None:
        x = sparse.csr_matrix(train)
        self._train = x
        self.counts = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float32)

    def scores(self, user_codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        if self.counts is None:
            raise not_fitted(self.name)
        rows = np.asarray(user_codes)
        return np.broadcast_to(self.counts, (rows.size, self.counts.size))

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        if self.counts is None or self._train is None:
            raise not_fitted(self.name)
        ex = self._train if exclude is None else exclude
        return top_n(self.scores, user_codes, n, ex, self.counts.size)

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        """Popularity has no notion of similarity; it answers with the popular items."""
        if self.counts is None:
            raise not_fitted(self.name)
        counts = self.counts
        ex = sparse.identity(counts.size, dtype=np.float32, format="csr")
        return top_n(
            lambda rows: np.broadcast_to(counts, (rows.size, counts.size)),
            item_codes,
            n,
            ex,
            counts.size,
        )
