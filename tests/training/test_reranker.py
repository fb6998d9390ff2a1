"""The re-ranker's ONNX export scores exactly like scikit-learn, features have fixed shape, and
the gate's held-out score measures what the model adds to the blend's order."""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import pytest
from scipy import sparse

from shared.reranking.features import FEATURES, ItemTable, build_features
from training.reranker import (
    Shape,
    TrainingRows,
    held_out_gain,
    new_model,
    shape_arg,
    to_onnx,
)


def test_features_shape_and_padding() -> None:
    items = ItemTable(
        popularity=np.array([5, 1, 0], np.float32),
        first_seen=np.zeros(3),
        last_seen=np.full(3, 86400.0),
        mean_weight=np.ones(3, np.float32),
        categories=np.array([[1, 0], [0, 1], [1, 1]], np.float32),
    )
    cand = np.array([[0, 2, -1]])
    f = build_features(
        cand,
        np.array([[2.0, 1.0, 0.0]]),
        np.zeros((1, 3)),
        items,
        np.array([[1, -1]]),
        np.array([4.0]),
        np.array([2 * 86400.0]),
    )
    assert f.shape == (3, len(FEATURES)) and f.dtype == np.float32
    assert np.all(f[2] == 0)  # padding row
    assert f[0, FEATURES.index("score_gap")] == 0 and f[1, FEATURES.index("score_gap")] == -1
    assert f[0, FEATURES.index("age_days")] == 2


def test_onnx_matches_sklearn() -> None:
    """Both forms, the line plus trees (the default) and trees alone, score as scikit-learn."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    x[:, 3] = x[:, 3] * 50 + 200  # a feature far from unit scale, as age_days is
    y = (x[:, 0] + 0.5 * x[:, 4] + 0.01 * x[:, 3] + rng.normal(scale=0.5, size=2000)) > 2
    for shape in (Shape(30, 8, 0.2, linear=True), Shape(30, 8, 0.2)):
        model = new_model(shape=shape).fit(x, y.astype(np.float32))
        assert np.any(model.coef != 0) == shape.linear
        sess = ort.InferenceSession(to_onnx(model), providers=["CPUExecutionProvider"])
        (scores,) = sess.run(None, {"features": x})
        assert np.max(np.abs(np.asarray(scores).ravel() - model.predict(x))) <= 1e-5, shape


def test_the_line_takes_the_trend_and_the_trees_the_rest() -> None:
    """With a line first, a linear target needs no tree splits: the trees' residual is ~0."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, len(FEATURES))).astype(np.float32)
    y = (0.3 * x[:, 0] - 0.2 * x[:, 5] + 0.5).astype(np.float32)
    model = new_model(shape=Shape(5, 8, 0.2, linear=True)).fit(x, y)
    assert np.allclose(model.coef[[0, 5]], [0.3, -0.2], atol=1e-3)
    assert np.max(np.abs(model.trees.predict(x))) < 1e-3
    assert np.max(np.abs(model.predict(x) - y)) < 1e-3


def _rows_where_popularity_decides(n_users: int = 400, n_cand: int = 20) -> TrainingRows:
    """The blend lists candidates least popular first; the held-out items are the popular ones."""
    rng = np.random.default_rng(1)
    users = np.arange(n_users, dtype=np.int64)
    cand = np.tile(np.arange(n_cand, dtype=np.int32), (n_users, 1))
    feats = rng.random((n_users * n_cand, len(FEATURES))).astype(np.float32)
    pop = np.tile(np.linspace(0, 1, n_cand, dtype=np.float32), n_users)
    feats[:, FEATURES.index("pop_pct")] = pop
    labels = (pop > 0.8) & (rng.random(pop.size) < 0.9)
    truth = sparse.csr_matrix(labels.reshape(n_users, n_cand).astype(np.float32))
    return TrainingRows(users, cand, feats, labels, truth)


def test_held_out_gain_scores_the_reranked_order_on_the_other_half() -> None:
    rows = _rows_where_popularity_decides()
    half = np.random.default_rng(0).random(rows.users.size) < 0.5
    scored = held_out_gain(rows, half, k=5)
    assert scored is not None
    base, reranked = scored
    assert base < 0.05  # the blend's order puts the held-out items last
    assert reranked > 0.9  # the trees learn that popularity decides


def test_held_out_gain_needs_labels_on_both_halves() -> None:
    rows = _rows_where_popularity_decides()
    half = np.zeros(rows.users.size, dtype=bool)
    half[: rows.users.size // 2] = True
    no_labels_in_half = rows._replace(labels=rows.labels & ~np.repeat(half, rows.cand.shape[1]))
    assert held_out_gain(no_labels_in_half, half, k=5) is None


def test_new_model_takes_its_size_from_the_shape() -> None:
    model = new_model(shape=Shape(trees=7, leaves=4, learning_rate=0.3, linear=True))
    trees = model.trees
    assert (trees.max_iter, trees.max_leaf_nodes, trees.learning_rate, model.linear) == (
        7, 4, 0.3, True)


def test_shape_text_round_trips() -> None:
    for text in ("line+15x8@0.2", "30x8@0.2"):
        assert str(shape_arg(text)) == text
    with pytest.raises(argparse.ArgumentTypeError, match=r"optionally prefixed with 'line\+'"):
        shape_arg("line15x8")
