"""Ordering one request's candidates: re-rank, filter, business rules, diversity, top k.

Pure functions over the loaded version data and numpy arrays, so the request path does a few
vectorised operations on ~100 candidates and no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.reranking.features import build_features
from shared.serving.model_data import VersionData
from shared.serving.rules import TenantRules

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
HISTORY = 20  # recent items the re-ranker looks at (as in training)


@dataclass(frozen=True)
class Scored:
    item_id: str
    score: float


def rerank(
    data: VersionData,
    codes: npt.NDArray[np.int64],
    scores: FloatArray,
    recent: Sequence[str],
    window_pop: dict[str, float],
    n_user: float,
    items: Sequence[str],
) -> FloatArray:
    """Re-ranker probabilities for the candidates (the generator scores if there is none)."""
    if data.reranker is None or codes.size == 0:
        return scores
    hist = np.full((1, HISTORY), -1, dtype=np.int64)
    if recent:
        h = data.codes(list(recent[:HISTORY]))
        h[h >= data.n_items] = -1
        hist[0, : h.size] = h
    wpop = (
        np.fromiter((window_pop.get(i, 0.0) for i in items), np.float32, len(items))
        if window_pop
        else np.zeros(len(items), np.float32)
    )
    feats = build_features(
        codes.reshape(1, -1),
        scores.reshape(1, -1),
        wpop.reshape(1, -1),
        data.table,
        hist,
        np.array([n_user], np.float64),
        np.array([time.time()], np.float64),
        data.pop_pct,
    )
    return data.reranker.score(feats)


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
    for source in sources:
        items, scores = source[0], source[1]
        if len(chosen) >= k:
            break
        if not len(items):
            continue
        codes = source[2] if len(source) > 2 else data.codes(list(items))
        final = boosted(data, codes, items, scores, rules)
        mask = category_mask(data, codes, categories)
        order = np.argsort(-final, kind="stable")
        cat_codes = data.category_codes
        diversify = cap < k and len(data.category_names) > 0
        for n in order.tolist():
            item = items[n]
            if item in excluded or item in blocked or item in taken:
                continue
            if mask is not None and not mask[n]:
                continue
            taken.add(item)
            entry = Scored(item, float(final[n]))
            if diversify:
                own = [j for j in cat_codes[codes[n]] if j not in wanted]
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
