"""Model versions per tenant and the pointer to the active one, kept in the `models` container.

Switching versions is one write of the pointer document, so readers see either the old or the
new version, never a mix.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.keys import ACTIVE_DOC_ID
from shared.stores.documents import DocumentStore

MODELS = "models"


@dataclass(frozen=True)
class ModelVersion:
    """What serving needs to know about a published version."""

    tenant: str
    version: str
    created: str
    popular: list[tuple[str, float]]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def age_seconds(self) -> float:
        created = datetime.fromisoformat(self.created)
        return (datetime.now(UTC) - created).total_seconds()


def save_version(store: DocumentStore, version: ModelVersion) -> None:
    store.upsert(
        MODELS,
        {
            "id": version.version,
            "pk": version.tenant,
            "kind": "version",
            "created": version.created,
            "popular": [[i, s] for i, s in version.popular],
            "manifest": version.manifest,
        },
    )


def read_version(store: DocumentStore, tenant: str, version: str) -> ModelVersion | None:
    doc = store.read(MODELS, version, tenant)
    if doc is None:
        return None
    return ModelVersion(
        tenant=tenant,
        version=version,
        created=str(doc["created"]),
        popular=[(str(i), float(s)) for i, s in doc.get("popular", [])],
        manifest=dict(doc.get("manifest", {})),
    )


def set_active(store: DocumentStore, tenant: str, version: str) -> str | None:
    """Point the tenant at `version`; returns the version it replaced."""
    current = store.read(MODELS, ACTIVE_DOC_ID, tenant)
    previous = None if current is None else str(current["version"])
    store.upsert(
        MODELS,
        {
            "id": ACTIVE_DOC_ID,
            "pk": tenant,
            "kind": "pointer",
            "version": version,
            "previous": previous,
            "switched": datetime.now(UTC).isoformat(),
        },
    )
    return previous


def active_version_id(store: DocumentStore, tenant: str) -> str | None:
    doc = store.read(MODELS, ACTIVE_DOC_ID, tenant)
    return None if doc is None else str(doc["version"])


class ActiveModels:
    """Per-process view of each tenant's active version, re-read at most every `refresh` s.

    Requests use the version they find; a stale entry is refreshed by the first request that
    notices, and if the store cannot be reached the last known version keeps serving.
    """

    def __init__(self, store: DocumentStore, refresh_seconds: float = 10.0) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, ModelVersion | None]] = {}

    def get(self, tenant: str) -> ModelVersion | None:
        entry = self._known.get(tenant)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self._refresh:
            return entry[1]
        with self._lock:
            entry = self._known.get(tenant)
            if entry is not None and now - entry[0] < self._refresh:
                return entry[1]
            try:
                model = self._load(tenant, None if entry is None else entry[1])
            except Exception:
                if entry is None:
                    raise
                model = entry[1]  # store unreachable: keep serving what we have
            self._known[tenant] = (now, model)
            return model

    def _load(self, tenant: str, current: ModelVersion | None) -> ModelVersion | None:
        version = active_version_id(self._store, tenant)
        if version is None:
            return None
        if current is not None and current.version == version:
            return current
        return read_version(self._store, tenant, version)

    def forget(self) -> None:
        with self._lock:
            self._known.clear()
