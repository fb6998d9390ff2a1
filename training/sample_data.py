"""A synthetic interactions file, so the Quickstart runs with no dataset to hand."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_sample(path: Path, n_users: int = 500, n_items: int = 300, per_user: int = 40,
                 seed: int = 7) -> Path:
    """Users with a taste for one of a few item clusters, and power-law item popularity."""
    rng = np.random.default_rng(seed)
    n_clusters = 6
    item_cluster = rng.integers(0, n_clusters, n_items)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    path.parent.mkdir(parents=True, exist_ok=True)
    start = 1_700_000_000
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["user_id", "item_id", "weight", "timestamp"])
        for u in range(n_users):
            taste = rng.integers(0, n_clusters)
            p = popularity * np.where(item_cluster == taste, 6.0, 1.0)
            n = int(rng.integers(per_user // 2, per_user * 3 // 2))
            items = rng.choice(n_items, size=min(n, n_items), replace=False, p=p / p.sum())
            for j, item in enumerate(items):
                out.writerow([str(u + 1), str(item + 1), int(rng.integers(1, 6)),
                              start + u * 97 + j * 3600])
    return path
