"""Turns a trained model into a served version: artifact, store and cache, then the switch.

Order matters: everything is written under the new version first and the tenant's active
pointer moves last, in one write, so a half-finished publish is never served.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shared.keys import (
    candidates_cache_key,
    candidates_doc_id,
    encode_candidates,
    user_partition,
)
from shared.model_registry import ModelVersion, save_version, set_active
from shared.serving.recommender import RECOMMENDATIONS
from shared.stores.factory import Backends
from training.model import TrainedModel

log = logging.getLogger(__name__)

POPULAR_IN_VERSION = 100
CHUNK = 1000


def new_version_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("v%Y%m%d%H%M%S%f")


def manifest_of(model: TrainedModel, tenant: str, version: str, created: str,
                rows: dict[str, int]) -> dict[str, Any]:
    return {
        "version": version,
        "tenant": tenant,
        "created": created,
        "generator": model.generator,
        "parameters": model.parameters,
        "rows": rows,
        "metrics": model.metrics,
        "features": model.features,
        "n_users": int(model.user_ids.shape[0]),
        "n_items": int(model.item_ids.shape[0]),
    }


def write_artifact(backends: Backends, model: TrainedModel, manifest: dict[str, Any]) -> None:
    prefix = f"{manifest['tenant']}/{manifest['version']}"
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        user_ids=model.user_ids,
        item_ids=model.item_ids,
        top_items=model.top_items,
        top_scores=model.top_scores,
        popularity=model.popularity,
    )
    files: dict[str, bytes] = {
        "candidates.npz": buf.getvalue(),
        "popular.json": json.dumps(model.popular_items(POPULAR_IN_VERSION)).encode(),
        "items.json": json.dumps(model.item_metadata).encode(),
        **model.extra_files,
    }
    if model.reranker_onnx is not None:
        files["reranker.onnx"] = model.reranker_onnx
    for name, data in files.items():
        backends.artifacts.put(f"{prefix}/{name}", data)
    # The manifest goes last: its presence means the artifact is complete.
    backends.artifacts.put(f"{prefix}/manifest.json", json.dumps(manifest, indent=2).encode())


def _user_lists(model: TrainedModel) -> Iterator[tuple[str, list[str], list[float]]]:
    for code, user in enumerate(model.user_ids):
        pairs = model.candidates_for(code)
        yield str(user), [i for i, _ in pairs], [s for _, s in pairs]


def fill(backends: Backends, model: TrainedModel, tenant: str, version: str,
         cache_ttl_seconds: int | None) -> int:
    """Writes every user's candidates to the store and the cache, in chunks."""
    docs: list[dict[str, Any]] = []
    cached: dict[str, bytes] = {}
    n = 0
    for user, items, scores in _user_lists(model):
        docs.append({
            "id": candidates_doc_id(version, user),
            "pk": user_partition(tenant, user),
            "version": version,
            "items": items,
            "scores": scores,
        })
        cached[candidates_cache_key(tenant, version, user)] = encode_candidates(items, scores)
        if len(docs) >= CHUNK:
            n += _flush(backends, docs, cached, cache_ttl_seconds)
    if docs:
        n += _flush(backends, docs, cached, cache_ttl_seconds)
    return n


def _flush(backends: Backends, docs: list[dict[str, Any]], cached: dict[str, bytes],
           ttl: int | None) -> int:
    backends.store.upsert_many(RECOMMENDATIONS, docs)
    backends.cache.set_many(cached, ttl)
    n = len(docs)
    docs.clear()
    cached.clear()
    return n


def publish(backends: Backends, model: TrainedModel, tenant: str, rows: dict[str, int],
            cache_ttl_seconds: int | None = None, version: str | None = None) -> ModelVersion:
    created = datetime.now(UTC)
    version = version or new_version_id(created)
    manifest = manifest_of(model, tenant, version, created.isoformat(), rows)
    write_artifact(backends, model, manifest)
    users = fill(backends, model, tenant, version, cache_ttl_seconds)
    published = ModelVersion(
        tenant=tenant,
        version=version,
        created=created.isoformat(),
        popular=model.popular_items(POPULAR_IN_VERSION),
        manifest=manifest,
    )
    save_version(backends.store, published)
    previous = set_active(backends.store, tenant, version)
    log.info("tenant %s: version %s active for %d users (was %s)", tenant, version, users, previous)
    return published
