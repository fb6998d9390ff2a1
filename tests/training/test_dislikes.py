"""Rows with a weight of 0 or below are dislikes: never learnt as a taste, never a hit in a
test, but their items are never recommended to the user who disliked them."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.retrain_data import clustered, lists_of, with_rows
from training.evaluate import evaluate_lists
from training.interactions import DataError, Interactions
from training.popularity import train_popularity
from training.train import train_default


def test_a_disliked_test_row_is_no_hit_and_a_user_with_only_dislikes_is_not_averaged() -> None:
    test = Interactions.from_columns(
        ["a", "a", "b", "b", "c"], ["x", "y", "x", "z", "x"], [1.0, 1.0, -1.0, 1.0, 0.0]
    )
    x = test.item_ids.tolist().index("x")
    recs = np.full((test.n_users, 1), x, dtype=np.int32)  # everyone is recommended x
    metrics = evaluate_lists(recs, test, k=1)
    assert metrics["precision@1"] == 0.5  # a's like of x is a hit; b's dislike is not; c out


def test_popularity_counts_likes_and_hides_each_users_dislikes() -> None:
    rows = [(f"u{n}", "bad", -1.0) for n in range(5)] + [("u5", "good", 1.0), ("u6", "good", 1.0)]
    rows += [("u0", "other", 1.0), ("fresh", "other", 1.0)]
    data = Interactions.from_columns([r[0] for r in rows], [r[1] for r in rows],
                                     [r[2] for r in rows])
    model = train_popularity(data, 3)
    assert model.popularity[data.item_ids.tolist().index("bad")] == 0
    assert lists_of(model, data, "fresh", 3) == ["good", "bad"]  # bad: no likes, last
    assert "bad" not in lists_of(model, data, "u0", 3)


def test_default_training_counts_no_dislike_as_a_like_and_never_recommends_one() -> None:
    base = clustered(n_users=80, per_user=9, seed=3)
    first = base.items[base.users == 0]
    cluster0 = [u for u in range(base.n_users)
                if np.isin(base.items[base.users == u], first).sum() >= 4]
    dislikers, others = cluster0[::2], cluster0[1::2]
    users = base.user_ids.tolist()
    rows = [(users[u], "spam", -1.0) for u in dislikers]  # only ever disliked
    own = str(base.item_ids[first[0]])
    rows += [("hater", own, -1.0), ("hater", "spam", 0.0)]  # nothing but dislikes
    data = with_rows(base, rows)
    model = train_default(data, n_candidates=20, tuning_seconds=1.0)
    spam = data.item_ids.tolist().index("spam")
    assert model.popularity[spam] == 0  # and so in the re-ranker's item features:
    assert np.load(io.BytesIO(model.extra_files["item_stats.npz"]))["popularity"][spam] == 0
    for u in dislikers:
        assert "spam" not in lists_of(model, data, users[u], 20)
    for u in others:  # nor promoted to the rest of its cluster
        assert "spam" not in lists_of(model, data, users[u], 20)
    hater = lists_of(model, data, "hater", 20)
    assert own not in hater and "spam" not in hater
    popular = np.argsort(-model.popularity, kind="stable")
    expected = [str(data.item_ids[i]) for i in popular if data.item_ids[i] not in (own, "spam")]
    assert hater == expected[:20]


def test_a_dislike_undoes_the_pairs_earlier_likes_but_not_a_later_one() -> None:
    data = Interactions.from_columns(
        ["a", "a", "b", "b", "c", "d", "d"], ["x", "x", "x", "x", "y", "z", "z"],
        [1.0, -1.0, -1.0, 2.0, 0.0, 3.0, -1.0], [10, 20, 10, 20, 5, 7, 7],
    )
    liked = data.positive()
    rows = {(str(liked.user_ids[u]), str(liked.item_ids[i]), float(w))
            for u, i, w in zip(liked.users, liked.items, liked.weights, strict=True)}
    assert rows == {("b", "x", 2.0)}  # d's dislike comes later in the file at the same time
    assert (liked.user_ids.tolist(), liked.item_ids.tolist()) == (
        data.user_ids.tolist(), data.item_ids.tolist())


def test_training_on_nothing_but_dislikes_is_a_data_error() -> None:
    data = Interactions.from_columns(["a", "b"], ["x", "y"], [-1.0, 0.0])
    with pytest.raises(DataError, match="no interaction has a weight above 0"):
        train_default(data)
