"""Ordering one request's candidates: re-rank, filter, business rules, diversity, top k.

Pure functions over the loaded version data and numpy arrays, so the request path does a few
vectorised operations on ~100 candidates and no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from shared.reranking.features import DAY, FEATURES
from shared.serving.model_data import STATIC_FEATURES, VersionData
from shared.serving.rules import TenantRules

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
HISTORY = 20  # recent items the re-ranker looks at (as in training)


class Scored(NamedTuple):
    """One picked item (a named tuple: a request builds a dozen, a frozen dataclass costs
    ~0.5 µs more each)."""

    item_id: str
    score: float


def rerank(
    data: VersionData,
    codes: npt.NDArray[np.int64],
    scores: FloatArray,
    recent: Sequence[str],
    window_pop: npt.NDArray[np.float32] | None,
    n_user: float,
    now: float | None = None,
) -> FloatArray:
    """Re-ranker scores for the candidates (the generator scores if there is none).

    `window_pop`: trailing-window popularity indexed by item code (None: no feedback yet).
    """
    if data.reranker is None or codes.size == 0:
        return scores
    hist = data.codes(list(recent[:HISTORY])) if recent else _NO_HISTORY
    feats = features_one(data, codes, scores, window_pop, hist[hist < data.n_items],
                         n_user, time.time() if now is None else now)
    return data.reranker.score(feats)


_NO_HISTORY = np.zeros(0, dtype=np.int64)
_RANK_FRAC: dict[int, npt.NDArray[np.float64]] = {}
_COL = {name: n for n, name in enumerate(FEATURES)}
# The columns features_one writes per request; every other column is per item
# (STATIC_FEATURES, filled in FeatureTable.rows). A new feature goes in one of the two.
REQUEST_FEATURES = [
    "score", "score_gap", "score_z", "rank_frac", "log_window_pop", "window_share",
    "age_days", "since_last_days", "log_user_n", "category_affinity", "category_cosine",
]
_unbuilt = set(FEATURES) - set(REQUEST_FEATURES) - set(STATIC_FEATURES)
if _unbuilt:
    raise RuntimeError(f"features_one does not build {sorted(_unbuilt)}: add them there")
_AGE, _SINCE = _COL["age_days"], _COL["since_last_days"]
# first_seen and last_seen columns in one operation when the two are neighbours
_SEEN_COLS: slice | list[int] = slice(_AGE, _AGE + 2) if _SINCE == _AGE + 1 else [_AGE, _SINCE]


def features_one(
    data: VersionData,
    codes: npt.NDArray[np.int64],
    scores: FloatArray,
    window_pop: npt.NDArray[np.float32] | None,
    history: npt.NDArray[np.int64],
    n_user: float,
    now: float,
) -> npt.NDArray[np.float32]:
    """`build_features` for one user, from per-version item columns computed once.

    The same numbers as `shared.reranking.features.build_features` (what training used; a test
    compares them), in a fraction of its time: the item-only columns come with one `take` of
    `data.feature_table.rows` (zeros elsewhere, so columns that must be zero are not written),
    and each request column is one or two small numpy operations: on 100 candidates the
    per-call overhead of numpy, not the arithmetic, is the cost.
    """
    table = data.feature_table
    c = codes.size
    out = table.rows.take(codes, axis=0)
    s = scores.astype(np.float64)
    # mean and std exactly as ndarray.mean()/.std() compute them, without their Python layers
    mean = np.add.reduce(s) / c
    dev = s - mean
    std = math.sqrt(np.add.reduce(dev * dev) / c)
    # Each column is computed in float64 (as build_features does) and rounded to float32 as
    # the ufunc writes it into `out`: one call per column.
    out[:, _COL["score"]] = s
    np.subtract(s, np.maximum.reduce(s), out=out[:, _COL["score_gap"]], casting="same_kind")
    np.divide(dev, max(std, 1e-9), out=out[:, _COL["score_z"]], casting="same_kind")
    frac = _RANK_FRAC.get(c)
    if frac is None:
        frac = _RANK_FRAC[c] = np.arange(c, dtype=np.float64) / max(c - 1, 1)
    out[:, _COL["rank_frac"]] = frac
    if window_pop is not None:  # else both columns stay 0
        wpop = window_pop.take(codes).astype(np.float64)
        np.log1p(wpop, out=out[:, _COL["log_window_pop"]], casting="same_kind")
        np.divide(wpop, table.pop_floor.take(codes), out=out[:, _COL["window_share"]],
                  casting="same_kind")
    age = np.subtract(now, table.seen.take(codes, axis=0))
    out[:, _SEEN_COLS] = np.divide(age, DAY, out=age)  # a list index would be a copy: assign
    out[:, _COL["log_user_n"]] = np.log1p(np.float64(n_user))
    cats = table.categories
    if cats.shape[1] == 0 or history.size == 0:
        return out  # the category columns stay 0
    profile = cats[history].sum(axis=0)  # exact: 0/1 rows
    cand = cats[codes]
    dot = cand @ profile
    overlap = cand @ (profile > 0).astype(np.float32)
    out[:, _COL["category_affinity"]] = np.where(overlap > 0, dot / max(history.size, 1), 0.0)
    out[:, _COL["category_cosine"]] = dot / np.maximum(
        np.linalg.norm(profile) * table.category_norm[codes], 1e-9
    )
    return out


def boosted(
    data: VersionData, codes: npt.NDArray[np.int64], items: Sequence[str], scores: FloatArray,
    rules: TenantRules,
) -> FloatArray:
    """Scores with the tenant's boost factors applied (a factor > 1 always moves an item up)."""
    if not rules.boost and not rules.boost_categories:
        return scores
    factor = np.ones(len(items), np.float64)
    if rules.boost:
        for n, item in enumerate(items):
            f = rules.boost.get(item)
            if f is not None:
                factor[n] *= f
    for cat, f in rules.boost_categories.items():
        j = data.category_index.get(cat)
        if j is not None:
            factor[data.item_categories[codes, j]] *= f
    s = scores.astype(np.float64)
    return np.where(s >= 0, s * factor, s / factor).astype(np.float32)


def category_mask(
    data: VersionData, codes: npt.NDArray[np.int64], categories: Sequence[str]
) -> npt.NDArray[np.bool_] | None:
    """Which candidates carry any of the requested categories (None: no category filter)."""
    if not categories:
        return None
    cols = [data.category_index[c] for c in categories if c in data.category_index]
    if not cols:
        return np.zeros(codes.size, dtype=np.bool_)
    return np.asarray(data.item_categories[np.ix_(codes, np.asarray(cols, np.int64))].any(axis=1))


Source = tuple[Sequence[str], FloatArray] | tuple[Sequence[str], FloatArray, IntArray]


def select(
    data: VersionData,
    sources: Iterable[Source],
    k: int,
    excluded: frozenset[str] | set[str],
    categories: Sequence[str],
    rules: TenantRules,
    max_share: float,
) -> list[Scored]:
    """Top k over the candidate sources in order (the second only tops up the first, ...).

    Drops excluded, blocked and off-category items; applies boosts and pins; keeps any one
    category (other than requested ones) to at most `max_share` of k where the candidates
    allow it, topping up with the best skipped items when they do not.
    """
    cap = max(1, math.floor(max_share * k)) if max_share < 1 else k
    wanted = {data.category_index[c] for c in categories if c in data.category_index}
    counts: dict[int, int] = {}
    chosen: list[Scored] = []
    skipped: list[Scored] = []
    taken: set[str] = set()
    blocked = rules.blocked
    cat_codes = data.category_codes
    diversify = cap < k and len(data.category_names) > 0
    for source in sources:
        items, scores = source[0], source[1]
        if len(chosen) >= k:
            break
        if not len(items):
            continue
        codes = source[2] if len(source) > 2 else data.codes(list(items))
        final = boosted(data, codes, items, scores, rules)
        mask = category_mask(data, codes, categories)
        order = (-final).argsort(kind="stable")
        # Python lists: indexing numpy arrays one element at a time costs more than converting
        final_scores, code_list = final.tolist(), codes.tolist()
        for n in order.tolist():
            item = items[n]
            if item in excluded or item in blocked or item in taken:
                continue
            if mask is not None and not mask[n]:
                continue
            taken.add(item)
            entry = Scored(item, final_scores[n])
            if diversify:
                own = cat_codes[code_list[n]]
                if wanted:
                    own = tuple(j for j in own if j not in wanted)
                if any(counts.get(j, 0) >= cap for j in own):
                    skipped.append(entry)
                    continue
                for j in own:
                    counts[j] = counts.get(j, 0) + 1
            chosen.append(entry)
            if len(chosen) >= k:
                break
    if len(chosen) < k and skipped:
        chosen.extend(skipped[: k - len(chosen)])
    if rules.pinned:
        chosen = _pin(data, chosen, k, excluded, categories, rules)
    return chosen[:k]


def _pin(
    data: VersionData, chosen: list[Scored], k: int, excluded: frozenset[str] | set[str],
    categories: Sequence[str], rules: TenantRules,
) -> list[Scored]:
    out = list(chosen)
    for pin in sorted(rules.pinned, key=lambda p: p.position):
        item = pin.item_id
        if item in excluded or item in rules.blocked or pin.position > k:
            continue
        if categories:
            mask = category_mask(data, data.codes([item]), categories)
            if mask is not None and not mask[0]:
                continue
        existing = next((s for s in out if s.item_id == item), None)
        if existing is not None:
            out.remove(existing)
        slot = min(pin.position - 1, len(out))
        score = existing.score if existing is not None else (
            out[slot].score if slot < len(out) else (out[-1].score if out else 0.0)
        )
        out.insert(slot, Scored(item, score))
    return out
