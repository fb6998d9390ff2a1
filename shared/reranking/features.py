"""Re-ranker features per (user, candidate), pure numpy so training and request time share them.

Everything here is available at request time: the candidate ids and generator scores stored
with the model, per-item statistics and categories from the artifact, the trailing-window
popularity the feedback path keeps up to date, and the user's recent items with the time of
the request. Training calls the same function with the user's last train timestamp as "now".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DAY = 86400.0

FEATURES: list[str] = [
    "score",
    "score_gap",  # score minus the user's best candidate score
    "score_z",  # score standardised within the user's candidate list
    "rank_frac",  # 0 for the first candidate, 1 for the last
    "log_pop",
    "pop_pct",  # popularity percentile in the catalogue
    "log_window_pop",  # interactions in the trailing window before "now"
    "window_share",  # trailing-window share of the item's interactions
    "age_days",  # now - first interaction with the item (negative: not yet out)
    "since_last_days",  # now - latest interaction with the item
    "mean_weight",
    "log_user_n",  # how many interactions the user has
    "category_affinity",  # share of the user's recent items sharing a category with the candidate
    "category_cosine",
]


@dataclass(frozen=True)
class ItemTable:
    """Per-item statistics indexed by item code (from the model artifact)."""

    popularity: npt.NDArray[np.float32]  # train interactions per item
    first_seen: npt.NDArray[np.float64]  # unix seconds
    last_seen: npt.NDArray[np.float64]
    mean_weight: npt.NDArray[np.float32]
    categories: npt.NDArray[np.float32]  # items x categories, 0/1 (may have 0 columns)

    @property
    def pop_percentile(self) -> npt.NDArray[np.float32]:
        """Rank of each item's popularity in [0, 1] (ties share the lower rank)."""
        n = self.popularity.size
        order = np.argsort(self.popularity, kind="stable")
        pct = np.empty(n, dtype=np.float32)
        pct[order] = np.arange(n, dtype=np.float32) / max(n - 1, 1)
        return pct


def build_features(
    cand_items: npt.NDArray[np.integer],
    cand_scores: npt.NDArray[np.floating],
    window_pop: npt.NDArray[np.floating],
    items: ItemTable,
    history: npt.NDArray[np.integer],
    n_user: npt.NDArray[np.floating],
    now: npt.NDArray[np.floating],
    pop_pct: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """(users*candidates) x len(FEATURES) float32 matrix, row-major by user then candidate.

    cand_items/cand_scores/window_pop: users x c (candidate codes best first, -1 padded; padded
    rows still get a row so shapes stay fixed). history: users x h recent item codes (-1 padded).
    n_user: interactions per user; now: the reference unix time per user.
    """
    cand = np.asarray(cand_items, dtype=np.int64)
    m, c = cand.shape
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    scores = np.where(valid, np.asarray(cand_scores, np.float64), np.nan)
    best = np.nanmax(np.where(valid.any(axis=1, keepdims=True), scores, 0.0), axis=1, keepdims=True)
    mean = np.nanmean(
        np.where(valid.any(axis=1, keepdims=True), scores, 0.0), axis=1, keepdims=True
    )
    std = np.nanstd(np.where(valid.any(axis=1, keepdims=True), scores, 0.0), axis=1, keepdims=True)
    scores = np.nan_to_num(scores, nan=0.0)
    pop = items.popularity.astype(np.float64)[safe]
    wpop = np.asarray(window_pop, np.float64)
    pct = (items.pop_percentile if pop_pct is None else pop_pct)[safe]
    now_col = np.asarray(now, np.float64).reshape(m, 1)

    cats = items.categories
    cat_aff = np.zeros((m, c))
    cat_cos = np.zeros((m, c))
    if cats.shape[1] > 0:
        hist = np.asarray(history, dtype=np.int64)
        hvalid = hist >= 0
        profile = (cats[np.where(hvalid, hist, 0)] * hvalid[..., None]).sum(axis=1)  # m x cats
        n_hist = np.maximum(hvalid.sum(axis=1, keepdims=True), 1)
        cand_cats = cats[safe]  # m x c x cats
        overlap = np.einsum("mcg,mg->mc", cand_cats, (profile > 0).astype(np.float32))
        cat_aff = np.einsum("mcg,mg->mc", cand_cats, profile) / n_hist
        cat_aff = np.where(overlap > 0, cat_aff, 0.0)
        pn = np.linalg.norm(profile, axis=1, keepdims=True)
        cn = np.linalg.norm(cand_cats, axis=2)
        dot = np.einsum("mcg,mg->mc", cand_cats, profile)
        cat_cos = dot / np.maximum(pn * cn, 1e-9)

    cols = [
        scores,
        scores - best,
        (scores - mean) / np.maximum(std, 1e-9),
        # over each row's own candidates, as serving sees a short list (padding is not a rank)
        np.arange(c, dtype=np.float64)[None, :]
        / np.maximum(valid.sum(axis=1, keepdims=True) - 1, 1),
        np.log1p(pop),
        pct.astype(np.float64),
        np.log1p(wpop),
        wpop / np.maximum(pop, 1.0),
        (now_col - items.first_seen[safe]) / DAY,
        (now_col - items.last_seen[safe]) / DAY,
        items.mean_weight.astype(np.float64)[safe],
        np.broadcast_to(np.log1p(np.asarray(n_user, np.float64)).reshape(m, 1), (m, c)),
        cat_aff,
        cat_cos,
    ]
    out = np.stack([np.asarray(col, dtype=np.float64) for col in cols], axis=-1)
    out[~valid] = 0.0
    return out.reshape(m * c, len(FEATURES)).astype(np.float32)


def window_counts(
    cum_hist: npt.NDArray[np.floating],
    bin_edges_start: float,
    bin_seconds: float,
    cand_items: npt.NDArray[np.integer],
    now: npt.NDArray[np.floating],
    window_days: float,
) -> npt.NDArray[np.float32]:
    """Interactions per candidate in (now - window, now], from items x bins cumulative counts.

    Training uses it to give every user their own "now"; at request time the trailing-window
    counts kept by the feedback path give the same number for now = the request time.
    """
    n_bins = cum_hist.shape[1]
    cand = np.asarray(cand_items, dtype=np.int64)
    safe = np.where(cand >= 0, cand, 0)
    now_bin = np.floor((np.asarray(now, np.float64) - bin_edges_start) / bin_seconds).astype(
        np.int64
    )
    hi = np.clip(now_bin, -1, n_bins - 1)
    lo = np.clip(now_bin - round(window_days * DAY / bin_seconds), -1, n_bins - 1)
    padded = np.concatenate([np.zeros((cum_hist.shape[0], 1)), cum_hist], axis=1)
    counts = padded[safe, (hi + 1)[:, None]] - padded[safe, (lo + 1)[:, None]]
    return np.where(cand >= 0, counts, 0.0).astype(np.float32)
