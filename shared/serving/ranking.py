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
from shared.serving.model_data import STATIC_FEATURES, CodedItems, VersionData
from shared.serving.rules import TenantRules

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
HISTORY = 20  # recent items the re-ranker looks at (as in training)


class Scored(NamedTuple):
    """One picked item (a named tuple: a request builds a dozen, a frozen dataclass costs
    ~0.5 µs more each)."""

    item_id: str
    score: float


class RerankInput(NamedTuple):
    """One request's re-ranker input: its candidates (codes, generator scores), the trending
    window by item code (None: no feedback yet), its recent known items, its activity."""

    codes: IntArray
    scores: FloatArray
    window_pop: FloatArray | None
    history: IntArray
    n_user: float


def rerank_input(data: VersionData, codes: IntArray, scores: FloatArray, recent: Sequence[str],
                 window_pop: FloatArray | None, n_user: float) -> RerankInput:
    if not recent:
        return RerankInput(codes, scores, window_pop, _NO_HISTORY, n_user)
    hist = data.codes(list(recent[:HISTORY]))
    return RerankInput(codes, scores, window_pop, hist[hist < data.n_items], n_user)


def rerank(data: VersionData, features: RerankInput, now: float | None = None) -> FloatArray:
    """Re-ranker scores for one request's candidates (the generator scores if there is none);
    `RerankBatcher` does the same for the requests of one event-loop turn together."""
    if data.reranker is None or features.codes.size == 0:
        return features.scores
    return data.reranker.score(
        features_many(data, [features], time.time() if now is None else now)
    )


_NO_HISTORY = np.zeros(0, dtype=np.int64)
_RANK_FRAC: dict[int, npt.NDArray[np.float64]] = {}
_COL = {name: n for n, name in enumerate(FEATURES)}
# The columns features_many writes per request; every other column is per item
# (STATIC_FEATURES, filled in FeatureTable.rows). A new feature goes in one of the two.
REQUEST_FEATURES = [
    "score", "score_gap", "score_z", "rank_frac", "log_window_pop", "window_share",
    "age_days", "since_last_days", "log_user_n", "category_affinity", "category_cosine",
]
_unbuilt = set(FEATURES) - set(REQUEST_FEATURES) - set(STATIC_FEATURES)
if _unbuilt:
    raise RuntimeError(f"features_many does not build {sorted(_unbuilt)}: add them there")
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
    """`features_many` for one request."""
    return features_many(data, [RerankInput(codes, scores, window_pop, history, n_user)], now)


def features_many(data: VersionData, batch: Sequence[RerankInput], now: float
                  ) -> npt.NDArray[np.float32]:
    """`build_features` for requests with the same number (> 0) of candidates, row-major.

    The same numbers as `shared.reranking.features.build_features` (what training used; tests
    compare them), in a fraction of its time: the item-only columns come with one `take` of
    `data.feature_table.rows` (zeros elsewhere, so columns that must be zero are not written),
    and each request column is one or two numpy operations over the batch: on 100 candidates
    the per-call overhead of numpy, not the arithmetic, is the cost, and a batch shares it.
    """
    table = data.feature_table
    m = len(batch)
    c = batch[0].codes.size
    if m == 1:
        codes = batch[0].codes.reshape(1, c)
        s = batch[0].scores.astype(np.float64).reshape(1, c)
    else:
        codes = np.stack([b.codes for b in batch])
        s = np.stack([b.scores for b in batch]).astype(np.float64)
    flat = codes.reshape(-1)
    out = table.rows.take(flat, axis=0)
    view = out.reshape(m, c, out.shape[1])  # the same memory, by request
    # mean and std per request exactly as ndarray.mean()/.std() compute them, without their
    # Python layers
    mean = np.add.reduce(s, axis=1, keepdims=True) / c
    dev = s - mean
    std = np.sqrt(np.add.reduce(dev * dev, axis=1, keepdims=True) / c)
    # Each column is computed in float64 (as build_features does) and rounded to float32 as
    # the ufunc writes it into `out`: one call per column.
    view[:, :, _COL["score"]] = s
    np.subtract(s, np.maximum.reduce(s, axis=1, keepdims=True),
                out=view[:, :, _COL["score_gap"]], casting="same_kind")
    np.divide(dev, np.maximum(std, 1e-9), out=view[:, :, _COL["score_z"]], casting="same_kind")
    frac = _RANK_FRAC.get(c)
    if frac is None:
        frac = _RANK_FRAC[c] = np.arange(c, dtype=np.float64) / max(c - 1, 1)
    view[:, :, _COL["rank_frac"]] = frac
    window = batch[0].window_pop
    wpop: npt.NDArray[np.float64] | None
    if any(b.window_pop is not window for b in batch):  # mixed: each its own (0 for None)
        wpop = np.stack([np.zeros(c) if b.window_pop is None else b.window_pop.take(b.codes)
                         for b in batch]).astype(np.float64).reshape(-1)
    else:
        wpop = None if window is None else window.take(flat).astype(np.float64)
    if wpop is not None:  # else both columns stay 0
        np.log1p(wpop, out=out[:, _COL["log_window_pop"]], casting="same_kind")
        np.divide(wpop, table.pop_floor.take(flat), out=out[:, _COL["window_share"]],
                  casting="same_kind")
    age = np.subtract(now, table.seen.take(flat, axis=0))
    out[:, _SEEN_COLS] = np.divide(age, DAY, out=age)  # a list index would be a copy: assign
    users = np.fromiter((b.n_user for b in batch), np.float64, m).reshape(m, 1)
    view[:, :, _COL["log_user_n"]] = np.log1p(users)
    cats = table.categories
    sizes = [b.history.size for b in batch]
    if cats.shape[1] == 0 or not any(sizes):
        return out  # the category columns stay 0
    if m == 1:
        profile = cats[batch[0].history].sum(axis=0, keepdims=True)  # exact: 0/1 rows
    else:
        profile = np.stack([cats[b.history].sum(axis=0) for b in batch])
    cand = cats[codes]  # m x c x categories
    dot = np.einsum("mcg,mg->mc", cand, profile)
    overlap = np.einsum("mcg,mg->mc", cand, (profile > 0).astype(np.float32))
    n_hist = np.maximum(np.array(sizes, np.float32), 1).reshape(m, 1)
    view[:, :, _COL["category_affinity"]] = np.where(overlap > 0, dot / n_hist, 0.0)
    view[:, :, _COL["category_cosine"]] = dot / np.maximum(
        np.linalg.norm(profile, axis=1, keepdims=True) * table.category_norm[codes], 1e-9
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


def category_cap(max_share: float, k: int) -> int:
    """Items one category may fill of the top k (at least 1). The epsilon: 0.7 * 90 is
    62.999... in binary floating point, and the cap is 63."""
    return max(1, math.floor(max_share * k + 1e-9)) if max_share < 1 else k


def select(
    data: VersionData,
    sources: Iterable[Source],
    k: int,
    excluded: frozenset[str] | set[str],
    categories: Sequence[str],
    rules: TenantRules,
    max_share: float,
    in_categories: frozenset[str] | set[str] = frozenset(),
) -> list[Scored]:
    """Top k over the candidate sources in order (the second only tops up the first, ...).

    Drops excluded, blocked and off-category items; applies boosts and pins; keeps any one
    category (other than requested ones) to at most `max_share` of k where the candidates
    allow it, topping up with the best skipped items when they do not. `in_categories`: ids
    known from elsewhere to be in a requested category (items the version does not know,
    from the requested categories' trending lists): they pass the category filter.
    """
    cap = category_cap(max_share, k)
    wanted = {data.category_index[c] for c in categories if c in data.category_index}
    counts = [0] * len(data.category_names)  # items chosen per category code
    chosen: list[Scored] = []
    skipped: list[Scored] = []
    taken: set[str] = set()
    blocked = rules.blocked
    cat_codes = data.category_codes
    diversify = cap < k and len(data.category_names) > 0
    shortcut = False  # the head of one source, best first: its scores already fall
    for source in sources:
        items, scores = source[0], source[1]
        if len(chosen) >= k:
            break
        if not len(items):
            continue
        codes = source[2] if len(source) > 2 else data.codes(list(items))
        final = boosted(data, codes, items, scores, rules)
        mask = category_mask(data, codes, categories)
        keep = None if mask is None else mask.tolist()
        order = (-final).argsort(kind="stable")
        if not taken and mask is None and order.size >= k:  # nothing visited yet
            head = _head_if_unconstrained(data, items, codes, final, order[:k], excluded, blocked,
                                          cap if diversify else None)
            if head is not None:
                chosen, shortcut = head, True
                break
        # Python lists: indexing numpy arrays one element at a time costs more than converting
        final_scores, code_list = final.tolist(), codes.tolist()
        by_code = items.ids if type(items) is CodedItems else None  # skips its __getitem__
        for n in order.tolist():
            code = code_list[n]
            item = items[n] if by_code is None else by_code[code]
            if item in excluded or item in blocked or item in taken:
                continue
            if keep is not None and not keep[n] and item not in in_categories:
                continue
            taken.add(item)
            entry = Scored(item, final_scores[n])
            if diversify:
                own = cat_codes[code]
                if wanted:
                    own = tuple(j for j in own if j not in wanted)
                full = False
                for j in own:  # a loop: any() over a generator costs ~1 µs per item
                    if counts[j] >= cap:
                        full = True
                        break
                if full:
                    skipped.append(entry)
                    continue
                for j in own:
                    counts[j] += 1
            chosen.append(entry)
            if len(chosen) >= k:
                break
    if len(chosen) < k and skipped:
        chosen.extend(skipped[: k - len(chosen)])
    if not shortcut:
        chosen = _falling(chosen)
    if rules.pinned:
        chosen = _pin(data, chosen, k, excluded, categories, rules)
    return chosen[:k]


def _falling(chosen: list[Scored]) -> list[Scored]:
    """The picked items with scores that never rise with rank. Sources have their own scales
    (re-ranker scores, then generator scores; neighbour similarities, trending sums, then
    popularity counts) and a top-up item's own score may exceed those above it; diversity
    puts skipped items last. Such an item takes the score of the one above it."""
    out: list[Scored] = []
    floor = math.inf
    for entry in chosen:
        if entry.score > floor:
            entry = Scored(entry.item_id, floor)
        floor = entry.score
        out.append(entry)
    return out


def _head_if_unconstrained(
    data: VersionData, items: Sequence[str], codes: IntArray, final: FloatArray,
    head: IntArray, excluded: frozenset[str] | set[str], blocked: frozenset[str] | set[str],
    cap: int | None,
) -> list[Scored] | None:
    """The candidates at positions `head` (best first) when the loop in `select` would pick
    exactly them: none excluded, blocked or repeated, and no category over `cap` among them.
    None otherwise. Most requests end here, with work for the k picked items only instead of
    a Python step per candidate visited."""
    code_list = codes.take(head).tolist()
    if cap is not None:  # in Python: numpy's reductions cost more on ~10 items
        counts: dict[int, int] = {}
        cat_codes = data.category_codes
        for code in code_list:
            for j in cat_codes[code]:
                counts[j] = counts.get(j, 0) + 1
        if counts and max(counts.values()) > cap:
            return None
    picked = ([items.ids[c] for c in code_list] if type(items) is CodedItems
              else [items[n] for n in head.tolist()])
    if excluded or blocked:
        for item in picked:
            if item in excluded or item in blocked:
                return None
    if len(set(picked)) < len(picked):
        return None
    return list(map(Scored._make, zip(picked, final.take(head).tolist(), strict=True)))


def _pin(
    data: VersionData, chosen: list[Scored], k: int, excluded: frozenset[str] | set[str],
    categories: Sequence[str], rules: TenantRules,
) -> list[Scored]:
    """Pinned items at their positions. All of them leave the list first and then go in by
    position, so no later pin shifts an earlier one; each takes the score of the slot it
    takes, so scores still fall with rank."""
    pins = []
    for pin in sorted(rules.pinned, key=lambda p: p.position):
        item = pin.item_id
        if item in excluded or item in rules.blocked or pin.position > k:
            continue
        if categories:
            mask = category_mask(data, data.codes([item]), categories)
            if mask is not None and not mask[0]:
                continue
        pins.append(pin)
    if not pins:
        return list(chosen)
    pinned = {p.item_id for p in pins}
    own = {s.item_id: s.score for s in chosen if s.item_id in pinned}
    out = [s for s in chosen if s.item_id not in pinned]
    for pin in pins:
        slot = min(pin.position - 1, len(out))
        if slot < len(out):
            score = out[slot].score
        else:
            score = out[-1].score if out else own.get(pin.item_id, 0.0)
        out.insert(slot, Scored(pin.item_id, score))
    return out
