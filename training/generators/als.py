"""Implicit-feedback ALS from the `implicit` library (CPU): the reference architecture's model."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
from scipy import sparse
from threadpoolctl import threadpool_limits

from training.generators.base import FloatArray, IntArray, not_fitted, self_excluding, top_n


class ALS:
    """Hu-Koren-Volinsky ALS; scores are user factors . item factors."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 42,
        threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.threads = threads
        self.user_factors: npt.NDArray[np.float32] | None = None
        self.item_factors: npt.NDArray[np.float32] | None = None
        self._train: sparse.csr_matrix | None = None

    def params(self) -> dict[str, float]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
        }

    def fit(self, train: sparse.csr_matrix) -> None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns otherwise
        from implicit.cpu.als import AlternatingLeastSquares

        self._train = sparse.csr_matrix(train, dtype=np.float32)
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=self.threads,
                calculate_training_loss=False,
            )
            model.fit(self._train, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def scores(self, user_codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        if self.user_factors is None or self.item_factors is None:
            raise not_fitted(self.name)
        return self.user_factors[np.asarray(user_codes)] @ self.item_factors.T

    def recommend(
        self, user_codes: npt.NDArray[np.integer], n: int, exclude: sparse.csr_matrix | None = None
    ) -> tuple[IntArray, FloatArray]:
        if self.user_factors is None or self.item_factors is None or self._train is None:
            raise not_fitted(self.name)
        ex = self._train if exclude is None else exclude
        return top_n(self.scores, user_codes, n, ex, self.item_factors.shape[0])

    def similar_items(
        self, item_codes: npt.NDArray[np.integer], n: int
    ) -> tuple[IntArray, FloatArray]:
        if self.item_factors is None:
            raise not_fitted(self.name)
        v = self.item_factors
        norms = np.linalg.norm(v, axis=1)
        vn = v / np.where(norms > 0, norms, 1.0)[:, None]
        return top_n(
            lambda rows: vn[rows] @ vn.T, item_codes, n, self_excluding(v.shape[0]), v.shape[0]
        )
