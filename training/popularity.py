"""The first model: most-interacted items, the same list for every user minus what they saw."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import sparse

from training.interactions import Interactions
from training.model import TrainedModel


def popular_lists(
    counts: npt.NDArray[np.float32], hidden: sparse.csr_matrix,
    users: npt.NDArray[np.integer], n: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """The `n` most popular items for each of `users`, minus that user's row of `hidden`
    (padded with -1 / 0), and their counts as scores."""
    order = np.argsort(-counts, kind="stable").astype(np.int32)
    top_items = np.full((len(users), n), -1, dtype=np.int32)
    top_scores = np.zeros((len(users), n), dtype=np.float32)
    # Users have seen few items: take the head of the global list wide enough to skip them.
    for row, u in enumerate(np.asarray(users).tolist()):
        seen_row = hidden.indices[hidden.indptr[u] : hidden.indptr[u + 1]]
        head = order[: n + len(seen_row)]
        keep = head[~np.isin(head, seen_row)][:n]
        top_items[row, : len(keep)] = keep
        top_scores[row, : len(keep)] = counts[keep]
    return top_items, top_scores


def popular_for_users_without_likes(
    liked: Interactions, hidden: sparse.csr_matrix,
    top_items: npt.NDArray[np.int32], top_scores: npt.NDArray[np.float32],
) -> None:
    """A user whose rows are all dislikes leaves a model no taste to score by: their list
    becomes the popular items minus their row of `hidden` (every item they have a row for),
    with scores of 0 (no opinion). `liked` is the data's `positive()` part."""
    no_likes = np.flatnonzero(np.bincount(liked.users, minlength=liked.n_users) == 0)
    if no_likes.size:
        counts = np.bincount(liked.items, minlength=liked.n_items).astype(np.float32)
        top_items[no_likes] = popular_lists(counts, hidden, no_likes, top_items.shape[1])[0]
        top_scores[no_likes] = 0.0


def train_popularity(data: Interactions, n_candidates: int = 100) -> TrainedModel:
    """Popularity counts the rows with a positive weight; every row's item stays hidden from
    its user, dislikes included."""
    counts = np.bincount(data.positive().items, minlength=data.n_items).astype(np.float32)
    users = np.arange(data.n_users)
    top_items, top_scores = popular_lists(counts, data.matrix(binary=True), users, n_candidates)
    return TrainedModel(
        generator="popularity",
        parameters={"n_candidates": n_candidates},
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        top_items=top_items,
        top_scores=top_scores,
        popularity=counts,
    )
