"""Model versions per tenant and the pointer to the active one, kept in the `models` container.

Switching versions is one write of the pointer document, so readers see either the old or the
new version, never a mix. The write is a compare-and-swap on the version the switch read (or
meant to replace): a switch landing in between (a rollback, which takes no lease, during a
publish) is never silently overwritten.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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


def save_version(store: DocumentStore, version: ModelVersion, **fields: Any) -> None:
    """The version's document, with `fields` (its status) in the same write."""
    store.upsert(
        MODELS,
        {
            "id": version.version,
            "pk": version.tenant,
            "kind": "version",
            "created": version.created,
            "popular": [[i, s] for i, s in version.popular],
            "manifest": version.manifest,
            **fields,
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


def switch_active(store: DocumentStore, tenant: str, version: str,
                  expected: str | None) -> dict[str, Any] | None:
    """Points the tenant at `version` only while the pointer names `expected` (None: while the
    tenant has no pointer), in one atomic write; returns the pointer written, or None (nothing
    written) when another switch came first."""
    doc = {
        "id": ACTIVE_DOC_ID,
        "pk": tenant,
        "kind": "pointer",
        "version": version,
        "previous": expected,
        "switched": datetime.now(UTC).isoformat(),
    }
    if expected is None:
        written = store.create(MODELS, doc)
    else:
        written = store.replace_if(MODELS, doc, {"version": expected})
    return doc if written else None


def restore_active(store: DocumentStore, before: dict[str, Any],
                   written: dict[str, Any]) -> bool:
    """Puts back the pointer `before` exactly as it was read (`previous` included: the next
    expiry keeps what it names) only while the pointer is still `written`, the one
    `switch_active` returned; False, nothing written, when another switch came since."""
    return store.replace_if(MODELS, before, {"version": written["version"],
                                             "switched": written["switched"]})


def set_active(store: DocumentStore, tenant: str, version: str) -> str | None:
    """Point the tenant at `version` from whatever is active; returns the version it replaced.
    A switch landing between the read and the write makes it read again, so `previous` names
    the version really replaced. (A switch that must start from one version: `switch_active`.)
    """
    while True:
        current = active_version_id(store, tenant)
        if switch_active(store, tenant, version, current) is not None:
            return current


def active_version_id(store: DocumentStore, tenant: str) -> str | None:
    doc = store.read(MODELS, ACTIVE_DOC_ID, tenant)
    return None if doc is None else str(doc["version"])


class ActiveModels:
    """Per-process view of each tenant's active version, re-read at most every `refresh` s.

    Only the first request for a tenant reads the pointer synchronously; later refreshes run on
    a background thread while requests keep the version they know, so a slow or unreachable
    store never stalls a request (with `refresh_seconds=0` every call reads synchronously).
    If the store cannot be reached the last known version keeps serving.
    """

    MAX_TENANTS = 10_000  # bound on remembered tenants (unknown names are remembered too)

    def __init__(self, store: DocumentStore, refresh_seconds: float = 10.0,
                 guard: Callable[[Callable[[], Any]], Any] | None = None) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._guard = guard or (lambda fn: fn())  # e.g. the store's circuit breaker
        # A tenant's first read holds its stripe's lock, never one shared by all tenants: the
        # event loop's get_nowait for a known tenant must not wait on another tenant's read.
        self._stripes = [threading.Lock() for _ in range(64)]
        self._lock = threading.Lock()  # guards `_refreshing` only; never held across a read
        self._known: dict[str, tuple[float, ModelVersion | None]] = {}
        self._versions: dict[tuple[str, str], tuple[float, ModelVersion | None]] = {}
        self._refreshing: set[str] = set()

    def use_guard(self, guard: Callable[[Callable[[], Any]], Any]) -> None:
        """Routes store reads through `guard` (serving passes the store's circuit breaker)."""
        self._guard = guard

    def get(self, tenant: str) -> ModelVersion | None:
        entry = self._known.get(tenant)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self._refresh:
            return entry[1]
        if entry is not None and self._refresh > 0:
            self._refresh_in_background(tenant)
            return entry[1]
        with self._stripes[hash(tenant) % len(self._stripes)]:
            entry = self._known.get(tenant)
            if entry is not None and now - entry[0] < self._refresh:
                return entry[1]
            return self._reload(tenant, entry, now)

    def get_nowait(self, tenant: str) -> tuple[bool, ModelVersion | None]:
        """(True, what `get` would return) when that needs no store read now, else (False, None).

        For the async request path: a stale entry is returned as `get` does (refreshed in the
        background); the first read of a tenant, or every read with refresh 0, must block.
        """
        entry = self._known.get(tenant)
        if entry is None:
            return False, None
        if time.monotonic() - entry[0] < self._refresh:
            return True, entry[1]
        if self._refresh > 0:
            self._refresh_in_background(tenant)
            return True, entry[1]
        return False, None

    def known(self, tenant: str) -> ModelVersion | None:
        """The last version read for the tenant, without touching the store."""
        entry = self._known.get(tenant)
        return None if entry is None else entry[1]

    def version(self, tenant: str, version: str) -> ModelVersion | None:
        """Any published version of the tenant (experiments serve non-active ones), cached."""
        key = (tenant, version)
        now = time.monotonic()
        hit = self._versions.get(key)
        if hit is not None and (hit[1] is not None or now - hit[0] < max(self._refresh, 1.0)):
            return hit[1]
        active = self.known(tenant)
        if active is not None and active.version == version:
            return active
        try:
            found = self._guard(lambda: read_version(self._store, tenant, version))
        except Exception:
            return None if hit is None else hit[1]
        self._versions[key] = (now, found)
        return found

    def _reload(self, tenant: str, entry: tuple[float, ModelVersion | None] | None,
                now: float) -> ModelVersion | None:
        try:
            model = self._guard(lambda: self._load(tenant, None if entry is None else entry[1]))
        except Exception:
            if entry is None:
                raise
            model = entry[1]  # store unreachable: keep serving what we have
        if len(self._known) >= self.MAX_TENANTS:
            self._known = {t: e for t, e in self._known.items() if e[1] is not None}
        self._known[tenant] = (now, model)
        return model

    def _refresh_in_background(self, tenant: str) -> None:
        with self._lock:
            if tenant in self._refreshing:
                return
            self._refreshing.add(tenant)

        def run() -> None:
            try:
                self._reload(tenant, self._known.get(tenant), time.monotonic())
            except Exception:  # logged by the store; the next request retries
                pass
            finally:
                with self._lock:
                    self._refreshing.discard(tenant)

        threading.Thread(target=run, name=f"active-{tenant}", daemon=True).start()

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
            self._versions.clear()
