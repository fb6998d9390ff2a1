"""The re-ranker's ONNX export scores exactly like scikit-learn, and features have fixed shape."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from shared.reranking.features import FEATURES, ItemTable, build_features
from training.reranker import new_model, to_onnx


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
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 4] + rng.normal(scale=0.5, size=2000)) > 0
    model = new_model()
    model.set_params(max_iter=30)
    model.fit(x, y.astype(np.float32))
    sess = ort.InferenceSession(to_onnx(model), providers=["CPUExecutionProvider"])
    (scores,) = sess.run(None, {"features": x})
    assert np.max(np.abs(np.asarray(scores).ravel() - model.predict(x))) <= 1e-5
