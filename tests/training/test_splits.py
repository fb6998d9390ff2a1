"""Splits keep vocabularies, follow their protocols and never leak test rows into validation."""

from __future__ import annotations

import numpy as np

from training.interactions import Interactions
from training.splits import split, stratified_split, temporal_split, validation_split


def data(n_users: int = 6, per_user: int = 10) -> Interactions:
    users = np.repeat([f"u{i}" for i in range(n_users)], per_user)
    items = np.array([f"i{(u * 3 + j) % 25}" for u in range(n_users) for j in range(per_user)])
    times = np.tile(np.arange(per_user) * 100, n_users) + 1000
    return Interactions.from_columns(users, items, None, times)


def test_stratified_matches_ms_recommenders_per_user_shuffle() -> None:
    d = data(per_user=10)
    train, test = stratified_split(d, ratio=0.75, seed=42)
    # round(7.5) == 8 (half to even) rows per user in train, as pandas-based MS code gives
    assert np.bincount(train.users).tolist() == [8] * 6
    perm = np.random.RandomState(42).permutation(10)
    user0_rows = np.flatnonzero(d.users == 0)
    expected = set(d.items[user0_rows[perm[:8]]].tolist())
    assert set(train.items[train.users == 0].tolist()) == expected
    assert len(train) + len(test) == len(d)
    assert train.item_ids is d.item_ids and test.user_ids is d.user_ids


def test_stratified_is_deterministic() -> None:
    d = data()
    a, _ = stratified_split(d, seed=42)
    b, _ = stratified_split(d, seed=42)
    assert np.array_equal(a.items, b.items)


def test_temporal_puts_latest_fifth_in_test() -> None:
    d = data(per_user=10)
    train, test = temporal_split(d, test_fraction=0.2)
    assert np.bincount(test.users).tolist() == [2] * 6
    for u in range(6):
        assert train.timestamps[train.users == u].max() < test.timestamps[test.users == u].min()


def test_temporal_keeps_single_row_users_in_train() -> None:
    d = Interactions.from_columns(
        ["a", "b", "b", "b", "b", "b"], ["x", "x", "y", "z", "w", "v"], None, [1, 1, 2, 3, 4, 5]
    )
    _, test = temporal_split(d)
    assert (test.users == 0).sum() == 0
    assert (test.users == 1).sum() == 1


def test_validation_is_carved_from_train_only() -> None:
    d = data()
    train, test = split(d, "stratified")
    fit, val = validation_split(train, "stratified")
    assert len(fit) + len(val) == len(train)
    test_keys = set(zip(test.users.tolist(), test.items.tolist(), strict=True))
    val_keys = set(zip(val.users.tolist(), val.items.tolist(), strict=True))
    assert not test_keys & val_keys
