"""Top-k for one user: cache, then store (written back to the cache), then cold start.

A backend that fails does not fail the request: the next source is tried and the answer is
marked degraded, the last resort being the popular list stored with the model version.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Literal

from shared.keys import (
    candidates_cache_key,
    candidates_doc_id,
    decode_candidates,
    encode_candidates,
    user_partition,
)
from shared.model_registry import ActiveModels, ModelVersion
from shared.stores.errors import BackendError
from shared.stores.factory import Backends

log = logging.getLogger(__name__)

Source = Literal["cache", "store", "cold_start", "degraded"]
RECOMMENDATIONS = "recommendations"


class NoActiveModel(LookupError):
    """The tenant has no published model yet (or the tenant is unknown)."""


@dataclass(frozen=True)
class RankedItem:
    item_id: str
    score: float
    rank: int


@dataclass(frozen=True)
class Answer:
    tenant: str
    user_id: str
    model_version: str
    source: Source
    items: list[RankedItem]
    recommendation_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Recommender:
    def __init__(self, backends: Backends, active: ActiveModels, cache_ttl_seconds: int) -> None:
        self._b = backends
        self._active = active
        self._ttl = cache_ttl_seconds

    def model_for(self, tenant: str) -> ModelVersion:
        model = self._active.get(tenant)
        if model is None:
            raise NoActiveModel(f"no model has been published for tenant '{tenant}'")
        return model

    def recommend(self, tenant: str, user_id: str, k: int) -> Answer:
        model = self.model_for(tenant)
        degraded = False
        source: Source = "cache"
        found: tuple[list[str], list[float]] | None = None
        key = candidates_cache_key(tenant, model.version, user_id)
        try:
            raw = self._b.cache.get(key)
            found = None if raw is None else decode_candidates(raw)
        except BackendError as exc:
            log.warning("cache unavailable, reading the store: %s", exc)
            degraded = True
        if found is None:
            source = "store"
            found, store_failed = self._from_store(
                tenant, model.version, user_id, key, write_back=not degraded
            )
            degraded = degraded or store_failed
        if found is None:
            source = "cold_start"
            items = [i for i, _ in model.popular]
            scores = [s for _, s in model.popular]
            found = (items, scores)
        ranked = [
            RankedItem(item, score, rank)
            for rank, (item, score) in enumerate(zip(*found, strict=True), start=1)
        ][:k]
        return Answer(tenant, user_id, model.version, "degraded" if degraded else source, ranked)

    def _from_store(
        self, tenant: str, version: str, user_id: str, key: str, write_back: bool
    ) -> tuple[tuple[list[str], list[float]] | None, bool]:
        """The user's stored candidates (or None) and whether the store failed."""
        try:
            doc = self._b.store.read(
                RECOMMENDATIONS,
                candidates_doc_id(version, user_id),
                user_partition(tenant, user_id),
            )
        except BackendError as exc:
            log.warning("store unavailable, answering from cold start: %s", exc)
            return None, True
        if doc is None:
            return None, False
        items, scores = decode_candidates(doc)
        if write_back:
            try:
                self._b.cache.set_many({key: encode_candidates(items, scores)}, self._ttl)
            except BackendError as exc:
                log.warning("cache write-back failed: %s", exc)
        return (items, scores), False
