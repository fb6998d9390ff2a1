"""Users deleted on request (`DELETE /api/users/{id}`) stay deleted.

The deletion removes what the stores hold, but copies outlive it: the artifact of a publish
that was interrupted before the deletion still lists the user's candidates, and Event Hubs
Capture files or exported event logs still hold their events. So each deletion is recorded,
as a digest of tenant and user id with the time (not the id itself), and:
- a fill skips such users in versions staged before their deletion (`training/publish.py`);
- training drops their rows logged before it (`training/retrain.py`);
- the feedback processor drops their events stamped before it that arrive after the Redis mark
  has lapsed (an export replayed later: `shared/feedback/process.py`).
A user who comes back after the deletion is a new user: their later events count.

Records live in the `models` container, one partition per tenant apart from its versions.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from shared.model_registry import MODELS
from shared.stores.documents import DocumentStore

KIND = "forgotten"


def partition(tenant: str) -> str:
    return f"forgotten|{tenant}"


def user_digest(tenant: str, user_id: str) -> str:
    return hashlib.sha256(f"{tenant}\x1f{user_id}".encode()).hexdigest()[:32]


def record(store: DocumentStore, tenant: str, user_id: str, at: datetime | None = None) -> None:
    """Records the deletion (again, on a retried request: the latest time counts)."""
    when = (at or datetime.now(UTC)).timestamp()
    digest = user_digest(tenant, user_id)
    store.upsert(MODELS, {"id": digest, "pk": partition(tenant), "kind": KIND, "at": when})


def forgotten(store: DocumentStore, tenant: str) -> dict[str, float]:
    """User digest -> when the user was deleted (unix seconds), for the tenant."""
    docs: list[dict[str, Any]] = store.query_partition(MODELS, partition(tenant))
    return {str(d["id"]): float(d["at"]) for d in docs if d.get("kind") == KIND}


def deleted_at(store: DocumentStore, tenant: str, user_id: str) -> float | None:
    """When the user was last deleted (unix seconds), or None: one point read."""
    doc = store.read(MODELS, user_digest(tenant, user_id), partition(tenant))
    return float(doc["at"]) if doc is not None and doc.get("kind") == KIND else None


def deleted_since(tenant: str, user_ids: list[str], since: float,
                  records: dict[str, float]) -> set[str]:
    """Those of `user_ids` deleted at or after `since` (unix seconds)."""
    if not records:
        return set()
    return {u for u in user_ids if records.get(user_digest(tenant, u), -1.0) >= since}
