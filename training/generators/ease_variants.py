"""Two EASE members that learn from more than which items a user had: the interaction weights
(ratings, event weights) and the times (sessions). Both are blend members next to plain EASE,
for catalogues where dense EASE fits; the tuning folds hand them their interactions.

Measured on ML-100k's stratified split in `bench/quality/leads.py` before they joined the
pipeline (`bench/quality/README.md`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from training.generators.ease import EASE
from training.interactions import Interactions


class CentredEASE(EASE):
    """EASE on weights centred by their mean: what a weight says beyond "seen" (a 1-star rating
    counts against the items it co-occurs with, a 5-star one for them). Fitted on a plain
    matrix (no interactions at hand) it is plain EASE."""

    name = "ease_centred"

    def fit_interactions(self, data: Interactions) -> None:
        weights = data.matrix()
        weights.data -= np.float32(weights.data.mean(dtype=np.float64))  # float32 sum overflows
        self.fit(weights)


def session_matrix(data: Interactions, gap_seconds: float) -> sparse.csr_matrix:
    """Sessions x items, 0/1: a session is a user's run of interactions with at most
    `gap_seconds` between consecutive ones."""
    order = np.lexsort((data.timestamps, data.users))
    users, items, ts = data.users[order], data.items[order], data.timestamps[order]
    start = np.r_[True, (users[1:] != users[:-1]) | (np.diff(ts) > gap_seconds)]
    sessions = np.cumsum(start) - 1
    m = sparse.csr_matrix((np.ones(sessions.size, np.float32), (sessions, items)),
                          shape=(int(sessions[-1]) + 1 if sessions.size else 0, data.n_items))
    m.data[:] = 1.0
    return m


class SessionEASE(EASE):
    """EASE whose item-item weights come from sessions (items used together in one sitting)
    while a user's scores come from their whole history. Fitted on a plain matrix it is plain
    EASE."""

    name = "ease_session"

    def __init__(self, reg_scale: float = 2.0, gap_seconds: float = 60.0) -> None:
        super().__init__(reg_scale=reg_scale)
        self.gap_seconds = gap_seconds

    def params(self) -> dict[str, float]:
        return {**super().params(), "gap_seconds": self.gap_seconds}

    def fit_interactions(self, data: Interactions) -> None:
        self.fit(session_matrix(data, self.gap_seconds))
        self._train = data.matrix(binary=True)
