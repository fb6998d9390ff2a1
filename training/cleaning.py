"""Data cleaning before training: ids serving cannot answer for, duplicates, bot-like bursts,
and too-rare users/items.

Each step only drops rows and the vocabularies stay as they were, so codes remain comparable
with anything computed before cleaning; the report says what went and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shared.ids import is_valid_id
from training.interactions import Interactions


@dataclass
class CleaningReport:
    """Rows removed per reason, users flagged as bots, and the iterations of the count filter."""

    input_rows: int = 0
    invalid_id_rows: int = 0  # user or item id outside the API's id rule (shared/ids.py)
    invalid_users: int = 0  # distinct ids; counts only, since user ids may be personal data
    invalid_items: int = 0
    duplicates: int = 0
    burst_rows: int = 0
    bot_users: list[str] = field(default_factory=list)
    sparse_rows: int = 0
    filter_rounds: int = 0
    output_rows: int = 0


def invalid_ids(ids: npt.NDArray[np.str_] | list[str]) -> npt.NDArray[np.bool_]:
    """True for ids the API would refuse: published, they could never be asked for, and
    their users' events would be dead-lettered."""
    return np.array([not is_valid_id(str(i)) for i in ids], dtype=bool)


def duplicate_mask(data: Interactions) -> npt.NDArray[np.bool_]:
    """True for repeats of the same (user, item, timestamp): replayed events, kept once."""
    keys = np.stack(
        [data.users.astype(np.int64), data.items.astype(np.int64), data.timestamps], axis=1
    )
    _, first = np.unique(keys, axis=0, return_index=True)
    dup = np.ones(len(data), dtype=bool)
    dup[first] = False
    return dup


def burst_users(data: Interactions, max_events: int, window_seconds: int) -> npt.NDArray[np.int32]:
    """User codes with more than `max_events` events inside any `window_seconds` window."""
    if len(data) == 0:
        return np.zeros(0, np.int32)
    order = np.lexsort((data.timestamps, data.users))
    u = data.users[order]
    t = data.timestamps[order]
    # event i and event i+max_events of the same user less than a window apart => burst
    if u.size <= max_events:
        return np.zeros(0, np.int32)
    same = u[max_events:] == u[:-max_events]
    close = (t[max_events:] - t[:-max_events]) < window_seconds
    return np.unique(u[max_events:][same & close]).astype(np.int32)


def min_count_mask(
    data: Interactions, min_user: int, min_item: int
) -> tuple[npt.NDArray[np.bool_], int]:
    """Rows to keep after iteratively removing users/items with too few interactions.

    Dropping a rare item can push a user under the limit (and back), so it repeats to a
    fixed point; returns the mask and how many rounds that took.
    """
    keep = np.ones(len(data), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        uc = np.bincount(data.users[keep], minlength=data.n_users)
        ic = np.bincount(data.items[keep], minlength=data.n_items)
        ok = keep & (uc[data.users] >= min_user) & (ic[data.items] >= min_item)
        if ok.sum() == keep.sum():
            return keep, rounds
        keep = ok


def clean(
    data: Interactions,
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
    burst_max_events: int | None = None,
    burst_window_seconds: int = 60,
) -> tuple[Interactions, CleaningReport]:
    """Drop rows with ids serving cannot take, duplicates, then every row of burst (bot-like)
    users, then too-rare users/items."""
    report = CleaningReport(input_rows=len(data))
    bad_users, bad_items = invalid_ids(data.user_ids), invalid_ids(data.item_ids)
    if bad_users.any() or bad_items.any():
        invalid = bad_users[data.users] | bad_items[data.items]
        report.invalid_id_rows = int(invalid.sum())
        report.invalid_users, report.invalid_items = int(bad_users.sum()), int(bad_items.sum())
        data = data.subset(~invalid)
    dup = duplicate_mask(data)
    report.duplicates = int(dup.sum())
    current = data.subset(~dup)
    if burst_max_events is not None:
        bots = burst_users(current, burst_max_events, burst_window_seconds)
        bot_rows = np.isin(current.users, bots)
        report.burst_rows = int(bot_rows.sum())
        report.bot_users = [str(current.user_ids[b]) for b in bots]
        current = current.subset(~bot_rows)
    keep, rounds = min_count_mask(current, min_user_interactions, min_item_interactions)
    report.sparse_rows = int((~keep).sum())
    report.filter_rounds = rounds
    current = current.subset(keep)
    report.output_rows = len(current)
    return current, report
