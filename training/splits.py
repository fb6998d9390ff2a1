"""Train/test/validation splits that keep codes comparable (all parts share one vocabulary).

`stratified_split` reproduces Microsoft Recommenders' `python_stratified_split` so our numbers
sit next to their published MovieLens table; `temporal_split` is the harder, production-like
protocol (predict each user's most recent interactions).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from training.interactions import DataError, Interactions


def _group_starts(
    keys: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stable order grouping rows by key (original order kept inside a group), plus group bounds."""
    order = np.argsort(keys, kind="stable").astype(np.int64)
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], bounds, [sorted_keys.size]]).astype(np.int64)
    return order, starts


def _round_half_even(x: float) -> int:
    """Python's round(), which pandas-based MS Recommenders code uses for split points."""
    return round(x)


def stratified_split(
    data: Interactions, ratio: float = 0.75, seed: int = 42, by: str = "user"
) -> tuple[Interactions, Interactions]:
    """Per user (or item): shuffle that user's rows with `seed`, first round(ratio*n) go to train.

    Matches `python_stratified_split(ratio, seed)`: pandas groups rows in file order and calls
    `group.sample(frac=1, random_state=seed)`, i.e. `RandomState(seed).permutation(len(group))`
    freshly seeded for every group, then splits at `round(ratio * len(group))`.
    """
    if not 0.0 < ratio < 1.0:
        raise DataError(f"ratio must be in (0, 1), got {ratio}")
    if by not in ("user", "item"):
        raise DataError("by must be 'user' or 'item'")
    keys = data.users if by == "user" else data.items
    order, starts = _group_starts(keys)
    in_train = np.zeros(len(data), dtype=bool)
    perms: dict[int, npt.NDArray[np.int64]] = {}  # same seed -> same permutation per group size
    for g in range(starts.size - 1):
        lo, hi = int(starts[g]), int(starts[g + 1])
        n = hi - lo
        perm = perms.get(n)
        if perm is None:
            perm = np.random.RandomState(seed).permutation(n)
            perms[n] = perm
        cut = _round_half_even(ratio * n)
        in_train[order[lo + perm[:cut]]] = True
    return data.subset(in_train), data.subset(~in_train)


def temporal_split(
    data: Interactions, test_fraction: float = 0.2, min_train: int = 1
) -> tuple[Interactions, Interactions]:
    """Per user: the latest `test_fraction` of rows (by time, file order on ties) is test.

    Users with too few rows to keep `min_train` in train keep everything in train.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(data)
    order = np.lexsort((np.arange(n), data.timestamps, data.users))
    sorted_users = data.users[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_users)) + 1, [n]])
    counts = np.diff(starts)
    n_test = np.floor(counts * test_fraction + 0.5).astype(np.int64)  # round half up
    n_test = np.minimum(n_test, np.maximum(counts - min_train, 0))
    pos_in_group = np.arange(n) - np.repeat(starts[:-1], counts)
    is_test_sorted = pos_in_group >= np.repeat(counts - n_test, counts)
    is_test = np.zeros(n, dtype=bool)
    is_test[order] = is_test_sorted
    return data.subset(~is_test), data.subset(is_test)


def validation_split(
    train: Interactions, protocol: str = "stratified", fraction: float = 0.2, seed: int = 7
) -> tuple[Interactions, Interactions]:
    """Carve a validation set out of *train* (never test) with the same protocol as the test split.

    Tuning on this keeps test numbers honest: nothing about the test rows is seen before scoring.
    """
    if protocol == "stratified":
        return stratified_split(train, ratio=1.0 - fraction, seed=seed)
    if protocol == "temporal":
        return temporal_split(train, test_fraction=fraction)
    raise DataError(f"unknown protocol {protocol!r}; use 'stratified' or 'temporal'")


def split(data: Interactions, protocol: str) -> tuple[Interactions, Interactions]:
    """The two benchmark protocols by name, with their published parameters."""
    if protocol == "stratified":
        return stratified_split(data, ratio=0.75, seed=42)
    if protocol == "temporal":
        return temporal_split(data, test_fraction=0.2)
    raise DataError(f"unknown protocol {protocol!r}; use 'stratified' or 'temporal'")
