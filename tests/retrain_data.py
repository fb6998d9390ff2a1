"""Small interaction sets for the retraining tests, with structure a real model can learn."""

from __future__ import annotations

import numpy as np

from training.interactions import Interactions
from training.model import TrainedModel


def clustered(n_users: int = 80, n_clusters: int = 4, items_per_cluster: int = 12,
              per_user: int = 9, seed: int = 0, prefix: str = "u") -> Interactions:
    """Users of cluster c interact with items of cluster c (plus one random item each);
    cluster sizes differ, so global popularity is a poor guess for most users."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    t = 1_700_000_000
    weights = np.array([0.4, 0.3, 0.2, 0.1][:n_clusters] + [0.1] * max(0, n_clusters - 4))
    clusters = rng.choice(n_clusters, size=n_users, p=weights / weights.sum())
    for u in range(n_users):
        c = int(clusters[u])
        pool = np.arange(c * items_per_cluster, (c + 1) * items_per_cluster)
        chosen = list(rng.choice(pool, size=per_user, replace=False))
        chosen.append(int(rng.integers(0, n_clusters * items_per_cluster)))
        for j, i in enumerate(chosen):  # the j-th interactions of all users are close in time
            users.append(f"{prefix}{u}")
            items.append(f"i{int(i)}")
            times.append(t + j * 100_000 + u * 10)
    return Interactions.from_columns(users, items, timestamps=times)


def with_rows(data: Interactions, rows: list[tuple[str, str, float]]) -> Interactions:
    """`data` plus extra (user, item, weight) rows, timestamps after everything else."""
    t = int(data.timestamps.max()) + 1
    return Interactions.from_columns(
        [*data.user_ids[data.users].tolist(), *(r[0] for r in rows)],
        [*data.item_ids[data.items].tolist(), *(r[1] for r in rows)],
        [*data.weights.tolist(), *(r[2] for r in rows)],
        [*data.timestamps.tolist(), *(t + n for n in range(len(rows)))],
    )


def lists_of(model: object, data: Interactions, user: str, k: int) -> list[str]:
    """The model's first k candidates for `user`, as item ids."""
    code = data.user_ids.tolist().index(user)
    items = model.top_items[code][:k]  # type: ignore[attr-defined]
    return [str(data.item_ids[i]) for i in items if i >= 0]


def least_popular_trainer(n: int = 100):
    """A deliberately bad model: everyone gets the least popular items."""

    def train(data: Interactions) -> TrainedModel:
        from training.popularity import train_popularity

        model = train_popularity(data, n)
        order = np.argsort(model.popularity, kind="stable").astype(np.int32)
        seen = data.matrix(binary=True)
        for u in range(data.n_users):
            row = order[~np.isin(order, seen.indices[seen.indptr[u]:seen.indptr[u + 1]])][:n]
            model.top_items[u] = -1
            model.top_items[u, : row.size] = row
            model.top_scores[u, : row.size] = np.linspace(1.0, 0.1, row.size)
        model.generator = "least-popular"
        return model

    return train


def ease_trainer(n: int = 100, reg_scale: float = 4.0):
    """A fast, real model (EASE from the quality generators) for tests that train often."""

    def train(data: Interactions) -> TrainedModel:
        from training.generators.ease import EASE

        gen = EASE(reg_scale=reg_scale)
        seen = data.matrix(binary=True)
        gen.fit(seen)
        users = np.arange(data.n_users, dtype=np.int64)
        top_items, top_scores = gen.recommend(users, n, exclude=seen)
        return TrainedModel(
            generator="ease", parameters={"reg_scale": reg_scale},
            user_ids=data.user_ids, item_ids=data.item_ids,
            top_items=top_items.astype(np.int32), top_scores=top_scores.astype(np.float32),
            popularity=np.bincount(data.items, minlength=data.n_items).astype(np.float32),
        )

    return train
