"""Cleaning removes ids serving refuses, duplicates, bursts and rare users/items, and reports
each."""

from __future__ import annotations

from training.cleaning import clean
from training.interactions import Interactions


def test_rows_with_ids_the_api_refuses_are_dropped_and_counted() -> None:
    users = ["u1", "a+b@x.com", "u2", "", "u1", "u3\n"]
    items = ["i1", "i1", "Toy Story", "i2", "i2", "i3"]
    out, report = clean(Interactions.from_columns(users, items, None, [1, 2, 3, 4, 5, 6]))
    kept = {(str(out.user_ids[u]), str(out.item_ids[i]))
            for u, i in zip(out.users, out.items, strict=True)}
    assert kept == {("u1", "i1"), ("u1", "i2")}
    assert report.invalid_id_rows == 4
    assert (report.invalid_users, report.invalid_items) == (3, 1)
    assert report.output_rows == 2


def test_duplicates_are_kept_once() -> None:
    d = Interactions.from_columns(["a", "a", "a"], ["x", "x", "y"], None, [5, 5, 6])
    out, report = clean(d)
    assert len(out) == 2 and report.duplicates == 1


def test_burst_users_are_removed() -> None:
    users = ["bot"] * 30 + ["human"] * 3
    items = [f"i{j}" for j in range(30)] + ["i1", "i2", "i3"]
    times = [*range(30), 0, 1000, 2000]
    out, report = clean(
        Interactions.from_columns(users, items, None, times),
        burst_max_events=20,
        burst_window_seconds=60,
    )
    assert report.bot_users == ["bot"] and report.burst_rows == 30
    assert set(out.users.tolist()) == {1}


def test_min_counts_are_applied_until_stable() -> None:
    # rare items w, z go first; then b and c have one item left and go; then d keeps x, y alone
    users = ["a", "a", "b", "b", "c", "c", "d", "d"]
    items = ["x", "y", "x", "w", "y", "z", "x", "y"]
    out, report = clean(
        Interactions.from_columns(users, items), min_user_interactions=2, min_item_interactions=2
    )
    assert sorted(out.user_ids[out.users].tolist()) == ["a", "a", "d", "d"]
    assert report.sparse_rows == 4 and report.output_rows == 4
    assert report.filter_rounds >= 2
