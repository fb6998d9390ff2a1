"""The ideal low-pass graph filter of GF-CF (Shen et al., CIKM 2021), a blend member.

With R~ = D_U^-1/2 R D_I^-1/2 (R the users x items matrix, D the degree diagonals) and V its
top `factors` right singular vectors, a user's scores are r_u D_I^-1/2 V V' D_I^1/2: their
history projected on the smoothest item signals of the normalised co-occurrence graph, with
popular items' weight restored. Closed form, one truncated SVD of a sparse matrix (0.1 s on
ML-100k). Beside EASE and ALS it adds what neither has, the degree-normalised spectrum: on
ML-100k's stratified split the blend's nDCG@10 rose by about 0.004 (`bench/quality/README.md`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.sparse.linalg import svds

from training.generators.base import FloatArray, IntArray, not_fitted, self_excluding, top_n


def _inverse_sqrt(degrees: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = np.zeros_like(degrees)
    np.divide(1.0, np.sqrt(degrees), out=out, where=degrees > 0)
    return out


class LowPass:
    name = "low_pass"

    def __init__(self, factors: int = 64, seed: int = 42) -> None:
        self.factors = factors
        self.seed = seed
        self._train: sparse.csr_matrix | None = None
        self._left: npt.NDArray[np.float32] | None = None  # items x k: D_I^-1/2 V
        self._right: npt.NDArray[np.float32] | None = None  # k x items: V' D_I^1/2
        self._vectors: npt.NDArray[np.float32] | None = None  # items x k: V

    def fit(self, train: sparse.csr_matrix) -> None:
        x = sparse.csr_matrix(train, dtype=np.float64)
        self._train = sparse.csr_matrix(train, dtype=np.float32)
        users = np.asarray(x.sum(axis=1)).ravel()
        items = np.asarray(x.sum(axis=0)).ravel()
        normalised = sparse.diags(_inverse_sqrt(users)) @ x @ sparse.diags(_inverse_sqrt(items))
        k = min(self.factors, min(x.shape) - 1)
        if k < 1:  # too small to have a spectrum: no signal
            v = np.zeros((x.shape[1], 0))
        else:
            start = np.random.default_rng(self.seed).standard_normal(min(x.shape))
            _, _, vt = svds(normalised, k=k, v0=start)
            v = vt.T
        self._vectors = v.astype(np.float32)
        self._left = (v * _inverse_sqrt(items)[:, None]).astype(np.float32)
        self._right = (v.T * np.sqrt(items)[None, :]).astype(np.float32)

    def scores(self, user_codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        if self._train is None or self._left is None or self._right is None:
            raise not_fitted(self.name)
        rows = self._train[np.asarray(user_codes)]
        return np.asarray((rows @ self._left) @ self._right, dtype=np.float32)

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        if self._train is None:
            raise not_fitted(self.name)
        ex = self._train if exclude is None else exclude
        return top_n(self.scores, user_codes, n, ex, self._train.shape[1])

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        """Cosine between the items' rows of V (their place in the smooth spectrum)."""
        if self._vectors is None:
            raise not_fitted(self.name)
        v = self._vectors
        norms = np.linalg.norm(v, axis=1)
        vn = v / np.where(norms > 0, norms, 1.0)[:, None]
        return top_n(
            lambda rows: vn[rows] @ vn.T, item_codes, n, self_excluding(v.shape[0]), v.shape[0]
        )
