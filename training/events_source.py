"""Interactions from logged feedback: the events store (what the timer retrain learns from) and,
for large volumes, Event Hubs Capture files (`training/capture.py` feeds the same builder).

Rows are accumulated column by column (no per-row objects kept), timestamps parsed once per
distinct string, and duplicates (Capture is at-least-once) removed at the end on a 64-bit hash
of the event id: memory is a few bytes per event beyond the id strings themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np

from shared.feedback.process import EVENTS
from shared.feedback.schema import MAX_VALUE, utc_time
from shared.stores.documents import DocumentStore
from training.interactions import Interactions

# How much each kind of feedback says about a user's taste; impressions say none. A dislike
# (weight -1) is learnt from as no like and keeps its item out of the user's lists for good
# (`Interactions.positive`); online state hides it only while the user is active.
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0, "rating": 1.0,
                 "dislike": -1.0}


def _epoch(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    return int(utc_time(str(value)).timestamp())


class InteractionsBuilder:
    """Collects event documents of one tenant into training rows."""

    def __init__(self, tenant: str, since: datetime | None = None) -> None:
        self.tenant = tenant
        self._since = None if since is None else int(since.timestamp())
        self._users: list[str] = []
        self._items: list[str] = []
        self._weights: list[float] = []
        self._times: list[int] = []
        self._ids: list[int] = []
        self._ts_cache: dict[str, int] = {}
        self.skipped = 0  # documents of this tenant that cannot be used (no id, bad timestamp)

    def add(self, doc: Mapping[str, Any]) -> None:
        kind = doc.get("type")
        if kind not in EVENT_WEIGHTS or doc.get("tenant", "default") != self.tenant:
            return
        raw_ts = doc.get("timestamp")
        try:
            key = str(raw_ts)
            ts = self._ts_cache.get(key)
            if ts is None:
                ts = self._ts_cache[key] = _epoch(raw_ts)
                if len(self._ts_cache) > 100_000:
                    self._ts_cache.clear()
            user, item = str(doc["userId"]), str(doc["itemId"])
            event_id = str(doc.get("eventId") or doc["id"])
            if kind == "rating":  # a rating of 0 stays 0: only a missing value counts as 1
                value = doc.get("value")
                weight = 1.0 if value is None else float(value)
                if not abs(weight) <= MAX_VALUE:  # stored before the schema bounded it
                    raise ValueError(f"rating value {value!r} out of range")
            else:
                weight = EVENT_WEIGHTS[kind]
        except (KeyError, TypeError, ValueError):
            self.skipped += 1
            return
        if self._since is not None and ts < self._since:
            return
        self._users.append(user)
        self._items.append(item)
        self._weights.append(weight)
        self._times.append(ts)
        self._ids.append(hash((user, event_id)))  # the store's identity: one id per user

    def add_all(self, docs: Iterable[Mapping[str, Any]]) -> InteractionsBuilder:
        for doc in docs:
            self.add(doc)
        return self

    def __len__(self) -> int:
        return len(self._users)

    def build(self, source: str) -> Interactions | None:
        """The interactions, each (user, event id) once (first kept), or None if empty."""
        if not self._users:
            return None
        _, first = np.unique(np.asarray(self._ids, np.int64), return_index=True)
        keep = np.sort(first)
        users = np.asarray(self._users, dtype=str)[keep]
        items = np.asarray(self._items, dtype=str)[keep]
        weights = np.asarray(self._weights, np.float32)[keep]
        times = np.asarray(self._times, np.int64)[keep]
        return Interactions.from_columns(users, items, weights, times, source=source)


def read_events(
    store: DocumentStore, tenant: str, since: datetime | None = None
) -> Interactions | None:
    """The tenant's logged feedback (optionally only since a time) as interactions."""
    builder = InteractionsBuilder(tenant, since).add_all(store.scan(EVENTS, {"tenant": tenant}))
    return builder.build(f"events:{tenant}")
