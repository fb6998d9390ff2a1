"""Interactions from the events store: what the timer retrain learns from."""

from __future__ import annotations

from datetime import datetime

from shared.feedback.process import EVENTS
from shared.stores.documents import DocumentStore
from training.interactions import Interactions

# How much each kind of feedback says about a user's taste; dislikes and impressions say none.
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0, "rating": 1.0}


def read_events(store: DocumentStore, tenant: str) -> Interactions | None:
    users: list[str] = []
    items: list[str] = []
    weights: list[float] = []
    times: list[int] = []
    for doc in store.scan(EVENTS):
        kind = doc.get("type")
        if doc.get("tenant") != tenant or kind not in EVENT_WEIGHTS:
            continue
        users.append(str(doc["userId"]))
        items.append(str(doc["itemId"]))
        weights.append(float(doc.get("value") or 1.0) if kind == "rating" else EVENT_WEIGHTS[kind])
        times.append(int(datetime.fromisoformat(str(doc["timestamp"])).timestamp()))
    if not users:
        return None
    return Interactions.from_columns(users, items, weights, times, source=f"events:{tenant}")
