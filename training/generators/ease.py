"""EASE (Steck 2019): closed-form item-item regression; strongest simple model on small catalogues.

It needs dense n_items x n_items matrices, so `memory_bytes` lets the selector refuse it for
large catalogues before any allocation happens.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import linalg, sparse

from training.generators.base import FloatArray, IntArray, not_fitted, self_excluding, top_n


def memory_bytes(n_items: int) -> int:
    """Peak bytes of a fit: Gram matrix, its inverse and one float64 temporary (conservative)."""
    return int(n_items) * int(n_items) * (8 + 8 + 4)


class EASE:
    """B = I - P / diag(P) with P = (X'DX + lambda I)^-1, diagonal forced to zero.

    D = diag(n_u^-user_weight) down-weights heavy users' co-occurrences in the Gram matrix (0 is
    plain EASE): one very active user otherwise adds n_u^2 pairs and dominates item-item weights.
    """

    name = "ease"

    def __init__(
        self, reg: float = 250.0, reg_scale: float | None = None, user_weight: float = 0.0
    ) -> None:
        self.reg = reg
        self.reg_scale = reg_scale  # when set: reg = reg_scale * mean Gram diagonal (scale-free)
        self.user_weight = user_weight
        self.weights: npt.NDArray[np.float32] | None = None
        self._train: sparse.csr_matrix | None = None

    def params(self) -> dict[str, float]:
        out = {"reg": self.reg}
        if self.reg_scale is not None:
            out["reg_scale"] = self.reg_scale
        if self.user_weight:
            out["user_weight"] = self.user_weight
        return out

    def fit(self, train: sparse.csr_matrix) -> None:
        x = sparse.csr_matrix(train, dtype=np.float64)
        self._train = sparse.csr_matrix(train, dtype=np.float32)
        if self.user_weight:
            n_u = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
            gram = (x.T @ (sparse.diags(n_u**-self.user_weight) @ x)).toarray()
        else:
            gram = (x.T @ x).toarray()
        if self.reg_scale is not None:
            diag = np.diag(gram)
            self.reg = float(
                self.reg_scale * max(diag[diag > 0].mean() if (diag > 0).any() else 1.0, 1e-6)
            )
        gram[np.diag_indices_from(gram)] += self.reg
        p = linalg.inv(gram, overwrite_a=True, check_finite=False)
        del gram
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights = b.astype(np.float32)

    def scores(self, user_codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        if self.weights is None or self._train is None:
            raise not_fitted(self.name)
        return np.asarray(self._train[np.asarray(user_codes)] @ self.weights, np.float32)

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        if self.weights is None or self._train is None:
            raise not_fitted(self.name)
        ex = self._train if exclude is None else exclude
        return top_n(self.scores, user_codes, n, ex, self.weights.shape[0])

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        if self.weights is None:
            raise not_fitted(self.name)
        w = self.weights
        return top_n(lambda rows: w[rows], item_codes, n, self_excluding(w.shape[0]), w.shape[0])
