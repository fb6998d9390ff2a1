"""The first model: most-interacted items, the same list for every user minus what they saw."""

from __future__ import annotations

import numpy as np

from training.interactions import Interactions
from training.model import TrainedModel


def train_popularity(data: Interactions, n_candidates: int = 100) -> TrainedModel:
    counts = np.bincount(data.items, minlength=data.n_items).astype(np.float32)
    order = np.argsort(-counts, kind="stable").astype(np.int32)
    seen = data.matrix(binary=True)
    top_items = np.full((data.n_users, n_candidates), -1, dtype=np.int32)
    top_scores = np.zeros((data.n_users, n_candidates), dtype=np.float32)
    # Users have seen few items: take the head of the global list wide enough to skip them.
    for u in range(data.n_users):
        seen_row = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        head = order[: n_candidates + len(seen_row)]
        keep = head[~np.isin(head, seen_row)][:n_candidates]
        top_items[u, : len(keep)] = keep
        top_scores[u, : len(keep)] = counts[keep]
    return TrainedModel(
        generator="popularity",
        parameters={"n_candidates": n_candidates},
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        top_items=top_items,
        top_scores=top_scores,
        popularity=counts,
    )
