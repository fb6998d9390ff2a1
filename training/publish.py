"""Turns a trained model into a served version: artifact, store and cache, then the switch.

Order matters: the artifact (manifest last), then a version document marked "filling", then
every user's candidates in Cosmos DB and Redis under the new version, and only then the tenant's
active pointer, in one write. A fill that dies half-way leaves the old version served; its
checkpoint (the last completed chunk, in the `models` container) lets a rerun continue where it
stopped. After the switch, versions older than the previous one are expired (their cache keys
and store documents deleted), so one rollback is always possible.

Writes at scale:
- Redis: candidate payloads are encoded a chunk at a time (numpy + orjson, no per-item Python
  formatting) and sent as one pipelined buffer of SET commands per chunk.
- Cosmos DB: bounded concurrency (a thread pool); 408/429/449/503 and transport errors are
  retried with exponential backoff and full jitter, waiting at least `x-ms-retry-after-ms`.
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from shared import forgotten
from shared.ids import is_valid_tenant, tenant_error
from shared.keys import (
    ACTIVE_DOC_ID,
    candidates_cache_key,
    candidates_doc_id,
    encode_candidate_codes,
    item_list_digest,
    user_partition,
    version_cache_prefix,
)
from shared.model_registry import (
    MODELS,
    ModelVersion,
    active_version_id,
    save_version,
    switch_active,
)
from shared.serving.recommender import RECOMMENDATIONS
from shared.stores.artifacts import ArtifactNotFound, ArtifactStore
from shared.stores.cache import HotCache, RedisCache
from shared.stores.documents import Document, DocumentStore
from shared.stores.errors import BackendError
from shared.stores.factory import Backends
from training.interactions import DataError
from training.model import TrainedModel

log = logging.getLogger(__name__)

POPULAR_IN_VERSION = 100
BULK_SOCKET_TIMEOUT_SECONDS = 30.0  # one fill chunk over TLS to a busy Redis
CHUNK = 1000
PENDING_MAX_AGE = timedelta(days=2)  # an unfinished fill older than this is abandoned
RETRYABLE_STATUS = frozenset({408, 429, 449, 503})
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Options and results


@dataclass(frozen=True)
class FillOptions:
    """How a fill writes: chunk size, store concurrency, cache TTL and the retry policy; and
    the versions expiry keeps besides the active and previous ones (experiment variants')."""

    chunk_users: int = CHUNK
    store_concurrency: int = 8  # the Cosmos client pools 10 connections by default
    cache_ttl_seconds: int | None = None
    max_attempts: int = 8
    base_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 10.0
    progress_every_seconds: float = 10.0
    pinned: frozenset[str] = frozenset()


@dataclass
class FillStats:
    """What a fill did; `chunks_skipped` were already done by an earlier, interrupted fill."""

    users: int = 0
    chunks: int = 0
    chunks_written: int = 0
    chunks_skipped: int = 0
    store_retries: int = 0
    seconds: float = 0.0
    skipped_deleted: int = 0  # users deleted on request after the version was staged
    removed_deleted: int = 0  # users deleted since staging, looked for again after the fill


class ActiveChanged(RuntimeError):
    """The version a staged one replaces (and was gated against) is no longer active."""


@dataclass
class Published:
    version: ModelVersion
    previous: str | None
    fill: FillStats
    expired: list[str] = field(default_factory=list)


def new_version_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("v%Y%m%d%H%M%S%f")


def manifest_of(model: TrainedModel, tenant: str, version: str, created: str,
                rows: dict[str, int], extra: dict[str, Any] | None = None) -> dict[str, Any]:
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
        # the item list the cached values' codes index (serving checks it before reading them)
        "candidate_codes": {"items": int(model.item_ids.shape[0]),
                            "digest": item_list_digest([str(i) for i in model.item_ids.tolist()])},
        **(extra or {}),
    }


# ---------------------------------------------------------------------------------------------
# Version records in the `models` container. Lifecycle: "filling" while its lists are written,
# "ready" once complete, "expiring" while its lists are deleted, "expired" once they are; no
# status means "ready". Only a ready version may be switched to.

READY, FILLING, EXPIRING, EXPIRED = "ready", "filling", "expiring", "expired"


def version_docs(store: DocumentStore, tenant: str) -> list[dict[str, Any]]:
    """Every version document of a tenant, oldest first."""
    docs = [d for d in store.query_partition(MODELS, tenant) if d.get("kind") == "version"]
    return sorted(docs, key=lambda d: (str(d.get("created", "")), str(d["id"])))


def version_status(doc: dict[str, Any]) -> str:
    return str(doc.get("status") or READY)


def mark_version(store: DocumentStore, tenant: str, version: str, status: str,
                 **fields: Any) -> None:
    """Sets a version's status (and any extra fields) on its document."""
    doc = store.read(MODELS, version, tenant)
    if doc is None:
        raise KeyError(f"tenant '{tenant}' has no version '{version}'")
    store.upsert(MODELS, {**doc, **fields, "status": status})


def active_pointer(store: DocumentStore, tenant: str) -> dict[str, Any] | None:
    """The tenant's pointer document: the active version and the one it replaced."""
    return store.read(MODELS, ACTIVE_DOC_ID, tenant)


# ---------------------------------------------------------------------------------------------
# Artifact


def _prefix(tenant: str, version: str) -> str:
    return f"{tenant}/{version}"


def artifact_path(prefix: str, name: str) -> str:
    """A file of the artifact at `prefix` ("" when the artifact is a folder of its own)."""
    return f"{prefix}/{name}" if prefix else name


def write_artifact(artifacts: ArtifactStore, model: TrainedModel, manifest: dict[str, Any],
                   prefix: str) -> None:
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
        artifacts.put(artifact_path(prefix, name), data)
    # The manifest goes last: its presence means the artifact is complete. It names the files,
    # so a file left in the folder by an earlier model (a re-ranker this one does not have) is
    # not read as part of this one.
    manifest = {**manifest, "files": sorted([*files, "manifest.json"])}
    artifacts.put(artifact_path(prefix, "manifest.json"), json.dumps(manifest, indent=2).encode())


def read_manifest_at(artifacts: ArtifactStore, prefix: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(artifacts.get(artifact_path(prefix, "manifest.json"))))
    except ArtifactNotFound:
        return None


def read_manifest(artifacts: ArtifactStore, tenant: str, version: str) -> dict[str, Any] | None:
    return read_manifest_at(artifacts, _prefix(tenant, version))


def load_model(artifacts: ArtifactStore, tenant: str, version: str) -> TrainedModel:
    """The candidate lists of a published artifact, as the TrainedModel that produced them."""
    return load_model_at(artifacts, _prefix(tenant, version))


def load_model_at(artifacts: ArtifactStore, prefix: str) -> TrainedModel:
    manifest = read_manifest_at(artifacts, prefix)
    if manifest is None:
        raise ArtifactNotFound(artifact_path(prefix, "manifest.json"))
    with np.load(io.BytesIO(artifacts.get(artifact_path(prefix, "candidates.npz")))) as npz:
        arrays = {name: npz[name] for name in npz.files}
    try:
        metadata = dict(json.loads(artifacts.get(artifact_path(prefix, "items.json"))))
    except ArtifactNotFound:
        metadata = {}
    return TrainedModel(
        generator=str(manifest.get("generator", "")),
        parameters=dict(manifest.get("parameters", {})),
        user_ids=arrays["user_ids"],
        item_ids=arrays["item_ids"],
        top_items=arrays["top_items"],
        top_scores=arrays["top_scores"],
        popularity=arrays["popularity"],
        metrics=dict(manifest.get("metrics", {})),
        item_metadata=metadata,
        features=list(manifest.get("features", [])),
    )


# ---------------------------------------------------------------------------------------------
# Encoding, a chunk of users at a time: store documents hold the JSON shared/keys
# .encode_candidates writes; cached values hold codes (shared/keys.encode_candidate_codes).


class CandidateEncoder:
    """Encodes users' candidate lists as `{"items":[...],"scores":[...]}` (`encode`) and as
    item codes into the model's item list (`encode_codes`).

    Item ids are JSON-encoded once. When ids have similar lengths each becomes a fixed-width
    token (`,"id"` plus trailing spaces, legal JSON whitespace) so a chunk's item lists are one
    numpy gather; otherwise tokens are joined per user. Scores keep 7 significant digits
    (float32 precision) relative to each user's largest score, written as integers with a
    decimal exponent (`1234567e-7`), so orjson formats integers instead of floats.
    """

    def __init__(self, model: TrainedModel, max_waste: float = 0.1) -> None:
        self.model = model
        self.width = int(model.top_items.shape[1]) if model.top_items.ndim == 2 else 0
        self._tokens = [orjson.dumps(str(i)) for i in model.item_ids.tolist()]
        lengths = np.array([len(t) + 1 for t in self._tokens] or [1], dtype=np.int64)
        w = int(lengths.max())
        self._fixed: npt.NDArray[np.uint8] | None = None
        if float(w - lengths.mean()) <= max_waste * float(lengths.mean()):
            table = np.full((len(self._tokens) + 1, w), ord(" "), dtype=np.uint8)
            for code, tok in enumerate(self._tokens):
                raw = np.frombuffer(b"," + tok, dtype=np.uint8)
                table[code, : raw.size] = raw
            self._fixed = table  # the last row (all spaces) stands for padding

    def _rows(self, lo: int, hi: int) -> tuple[npt.NDArray[np.int32],
                                                npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Users lo..hi's item codes and scores, valid entries (code >= 0) first, and counts."""
        items = np.asarray(self.model.top_items[lo:hi])
        scores = np.asarray(self.model.top_scores[lo:hi])
        valid = items >= 0
        if valid.size and bool((valid[:, 1:] & ~valid[:, :-1]).any()):
            order = np.argsort(~valid, axis=1, kind="stable")  # valid entries first
            items = np.take_along_axis(items, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            valid = items >= 0
        return items, np.where(valid, scores, 0.0), valid.sum(axis=1)

    def encode_codes(self, lo: int, hi: int) -> list[bytes]:
        """Cached values (`shared.keys.encode_candidate_codes`)."""
        return self._codes(*self._rows(lo, hi))

    def encode(self, lo: int, hi: int) -> list[bytes]:
        return self._json(*self._rows(lo, hi))

    def encode_both(self, lo: int, hi: int) -> tuple[list[bytes], list[bytes]]:
        """`encode` and `encode_codes` of the same users (a fill writes both)."""
        rows = self._rows(lo, hi)
        return self._json(*rows), self._codes(*rows)

    @staticmethod
    def _codes(items: npt.NDArray[np.int32], scores: npt.NDArray[np.float32],
               counts: npt.NDArray[np.int64]) -> list[bytes]:
        return [
            encode_candidate_codes(items[u, :c], scores[u, :c])
            for u, c in enumerate(counts.tolist())
        ]

    def _json(self, items: npt.NDArray[np.int32], scores: npt.NDArray[np.float32],
              counts: npt.NDArray[np.int64]) -> list[bytes]:
        item_rows = self._item_rows(items, counts)
        score_rows = _score_rows(scores, counts)
        return [
            b'{"items":[%s],"scores":[%s]}' % (i, s)
            for i, s in zip(item_rows, score_rows, strict=True)
        ]

    def _item_rows(self, items: npt.NDArray[np.int32], counts: npt.NDArray[np.int64]
                   ) -> list[bytes]:
        n = items.shape[0]
        if self.width == 0 or n == 0:
            return [b""] * n
        if self._fixed is not None:
            pad = self._fixed.shape[0] - 1
            tokens_v = self._fixed.view(np.dtype((np.void, self._fixed.shape[1]))).ravel()
            block = tokens_v[np.where(items >= 0, items, pad)].tobytes()  # one gather per chunk
            row = self._fixed.shape[1] * items.shape[1]
            return [block[u * row + 1 : (u + 1) * row] for u in range(n)]
        tokens = self._tokens
        return [
            b",".join([tokens[j] for j in r[:c]])
            for r, c in zip(items.tolist(), counts.tolist(), strict=True)
        ]


def _score_rows(scores: npt.NDArray[np.floating], counts: npt.NDArray[np.int64]) -> list[bytes]:
    n, width = scores.shape
    if width == 0 or n == 0:
        return [b""] * n
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = np.abs(s).max(axis=1)
    exp = np.zeros(n, dtype=np.int64)
    nz = peak > 0
    exp[nz] = 6 - np.floor(np.log10(peak[nz])).astype(np.int64)
    exp = np.clip(exp, -300, 300)
    ints = np.rint(s * np.power(10.0, exp)[:, None]).astype(np.int64)
    body = orjson.dumps(ints, option=orjson.OPT_SERIALIZE_NUMPY)
    rows = body[2:-2].split(b"],[")
    out: list[bytes] = []
    for r, e, c in zip(rows, exp.tolist(), counts.tolist(), strict=True):
        if c == 0:
            out.append(b"")
            continue
        if c < width:
            r = b",".join(r.split(b",")[:c])
        suffix = b"e%d" % -e
        out.append(r.replace(b",", suffix + b",") + suffix)
    return out


# ---------------------------------------------------------------------------------------------
# Cache writes


def write_cache(cache: HotCache, keys: list[str], values: list[bytes], ttl: int | None) -> None:
    """One chunk to the cache: a single pipelined buffer on Redis, set_many elsewhere."""
    with CacheWriter(cache, ttl) as writer:
        writer.write(keys, values)


def _resp_sets(keys: list[str], values: list[bytes], ttl: int | None) -> bytes:
    """SET commands packed as RESP by hand: no per-command client overhead."""
    if ttl:
        head, tail = b"*5\r\n$3\r\nSET\r\n", b"$2\r\nEX\r\n$%d\r\n%d\r\n" % (len(str(ttl)), ttl)
    else:
        head, tail = b"*3\r\n$3\r\nSET\r\n", b""
    return b"".join([
        b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (head, len(kb), kb, len(v), v, tail)
        for kb, v in zip((k.encode() for k in keys), values, strict=False)
    ])


class CacheWriter:
    """Writes chunks of entries to the cache.

    On Redis one connection is held and each chunk is sent as one buffer; a chunk's replies
    are read only after the next chunk has been sent, so Redis works on one chunk while this
    process encodes the next. `write` returns once every chunk before the last one it was
    given is confirmed; `close` confirms the rest.
    """

    def __init__(self, cache: HotCache, ttl: int | None) -> None:
        self.cache, self.ttl = cache, ttl
        self._conn: Any = None
        self._pending: list[int] = []  # replies still to read, per chunk sent

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(discard=exc_type is not None)

    def write(self, keys: list[str], values: list[bytes]) -> None:
        if not keys:
            return
        if not isinstance(self.cache, RedisCache):
            self.cache.set_many(dict(zip(keys, values, strict=True)), self.ttl)
            return
        import redis

        packed = _resp_sets(keys, values, self.ttl)
        try:
            if self._conn is None:
                self._conn = self._open()
            self._conn.send_packed_command([packed], check_health=False)
            self._pending.append(len(keys))
            while len(self._pending) > 1:
                self._read(self._pending.pop(0))
        except (redis.RedisError, OSError) as exc:
            self._abandon()
            raise BackendError(f"redis write failed: {exc}") from exc

    def _read(self, n: int) -> None:
        import redis

        failed: Exception | None = None
        for _ in range(n):
            try:
                self._conn.read_response()
            except redis.ResponseError as exc:  # keep reading: the stream must stay in step
                failed = failed or exc
        if failed is not None:
            self._abandon()
            raise BackendError(f"redis write failed: {failed}")

    def _open(self) -> Any:
        """A connection of its own, with the pool's settings but a bulk socket timeout: a
        chunk is megabytes, far beyond what the request path's sub-second timeout allows."""
        assert isinstance(self.cache, RedisCache)
        pool = self.cache.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": BULK_SOCKET_TIMEOUT_SECONDS}
        return pool.connection_class(**kwargs)

    def _abandon(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn, self._pending = None, []

    def confirm(self) -> None:
        """Waits for every chunk sent so far to be acknowledged."""
        if self._conn is None:
            return
        import redis

        try:
            while self._pending:
                self._read(self._pending.pop(0))
        except (redis.RedisError, OSError) as exc:
            self._abandon()
            raise BackendError(f"redis write failed: {exc}") from exc

    def close(self, discard: bool = False) -> None:
        if self._conn is None:
            return
        if discard:
            self._abandon()
            return
        self.confirm()
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None


# ---------------------------------------------------------------------------------------------
# Store writes: bounded concurrency, retries that honour the service's retry-after


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the service asked us to wait (0 if it did not say) when exc is retryable, else None.

    Walks the cause chain, since the store wraps SDK errors in BackendError.
    """
    seen: BaseException | None = exc
    while seen is not None:
        status = getattr(seen, "status_code", None)
        if isinstance(status, int) and status in RETRYABLE_STATUS:
            headers = getattr(seen, "headers", None) or {}
            raw = headers.get("x-ms-retry-after-ms") if hasattr(headers, "get") else None
            try:
                return max(float(raw) / 1000.0, 0.0) if raw is not None else 0.0
            except (TypeError, ValueError):
                return 0.0
        name = type(seen).__name__
        if name in ("ServiceRequestError", "ServiceResponseError", "ConnectionError"):
            return 0.0
        seen = seen.__cause__
    return None


class StoreWriter:
    """Document writes with bounded concurrency and retries; counts what it retried."""

    def __init__(self, store: DocumentStore, options: FillOptions,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.options = options
        self.retries = 0
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pool = (
            ThreadPoolExecutor(options.store_concurrency, thread_name_prefix="store-writer")
            if options.store_concurrency > 1 and store.name != "sqlite"
            else None
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _with_retry(self, call: Callable[[], T]) -> T:
        o = self.options
        for attempt in range(1, o.max_attempts + 1):
            try:
                return call()
            except Exception as exc:
                wait = retry_after_seconds(exc)
                if wait is None or attempt == o.max_attempts:
                    raise
                backoff = min(o.max_backoff_seconds, o.base_backoff_seconds * 2 ** (attempt - 1))
                with self._lock:
                    self.retries += 1
                self._sleep(max(wait, random.uniform(0, backoff)))  # full jitter, >= retry-after
        raise AssertionError("unreachable")

    def _map(self, fn: Callable[[Any], object], items: list[Any]) -> None:
        if self._pool is None:
            for item in items:
                fn(item)
            return
        futures = [self._pool.submit(fn, item) for item in items]
        errors = [f.exception() for f in futures]  # wait for all before failing the chunk
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def upsert_all(self, container: str, docs: list[Document]) -> None:
        if self._pool is None:  # embedded store: one transaction per chunk
            self._with_retry(lambda: self.store.upsert_many(container, docs))
            return
        self._map(lambda d: self._with_retry(lambda: self.store.upsert(container, d)), docs)

    def delete_all(self, container: str, ids: list[tuple[str, str]]) -> int:
        if self.store.name == "sqlite":  # embedded: one transaction per chunk, not per
            # document. Not Cosmos with one writer: retrying a chunk there deletes its
            # deleted documents again, which then count as absent.
            step, done = max(1, self.options.chunk_users), 0
            for lo in range(0, len(ids), step):
                done += self._with_retry(partial(self.store.delete_many, container,
                                                 ids[lo : lo + step]))
            return done
        deleted = 0
        lock = threading.Lock()

        def one(pair: tuple[str, str]) -> None:
            nonlocal deleted
            if self._with_retry(lambda: self.store.delete(container, pair[0], pair[1])):
                with lock:
                    deleted += 1

        self._map(one, ids)
        return deleted


# ---------------------------------------------------------------------------------------------
# Checkpoint


def _checkpoint_id(version: str) -> str:
    return f"fill|{version}"


def _read_checkpoint(store: DocumentStore, tenant: str, version: str, n_users: int,
                     chunk_users: int) -> int:
    doc = store.read(MODELS, _checkpoint_id(version), tenant)
    if doc is None or doc.get("n_users") != n_users or doc.get("chunk_users") != chunk_users:
        return 0  # no checkpoint, or one made with another chunking: start over
    return int(doc.get("done_chunks", 0))


def _write_checkpoint(store: DocumentStore, tenant: str, version: str, n_users: int,
                      chunk_users: int, total: int, done: int) -> None:
    store.upsert(MODELS, {
        "id": _checkpoint_id(version), "pk": tenant, "kind": "fill-checkpoint",
        "version": version, "n_users": n_users, "chunk_users": chunk_users,
        "total_chunks": total, "done_chunks": done, "updated": datetime.now(UTC).isoformat(),
    })


# ---------------------------------------------------------------------------------------------
# Fill


def _chunk_keys(model: TrainedModel, lo: int, hi: int, tenant: str,
                version: str) -> tuple[list[str], list[str]]:
    users = [str(u) for u in model.user_ids[lo:hi].tolist()]
    return users, [candidates_cache_key(tenant, version, u) for u in users]


def _deletions_as_of(store: DocumentStore, tenant: str, version: str) -> float:
    """When the version's training applied deletions on request (its staging time if it does
    not say; now if it has no record): users deleted since are not written."""
    doc = store.read(MODELS, version, tenant)
    if doc is None:
        return time.time()
    as_of = dict(doc.get("manifest") or {}).get("deletions_as_of")
    if isinstance(as_of, int | float):
        return float(as_of)
    return datetime.fromisoformat(str(doc["created"])).timestamp()


def fill(backends: Backends, model: TrainedModel, tenant: str, version: str,
         cache_ttl_seconds: int | None = None, options: FillOptions | None = None) -> FillStats:
    """Writes every user's candidates to the store and the cache, resuming from a checkpoint."""
    o = options or FillOptions(cache_ttl_seconds=cache_ttl_seconds)
    ttl = o.cache_ttl_seconds
    n_users = int(model.user_ids.shape[0])
    total = (n_users + o.chunk_users - 1) // o.chunk_users
    store = backends.store
    start = _read_checkpoint(store, tenant, version, n_users, o.chunk_users)
    stats = FillStats(users=n_users, chunks=total, chunks_skipped=start)
    if start:
        log.info("tenant %s version %s: resuming fill at chunk %d of %d",
                 tenant, version, start + 1, total)
    encoder = CandidateEncoder(model)
    since = _deletions_as_of(store, tenant, version)
    deleted = forgotten.forgotten(store, tenant)  # users deleted since its data was read
    t0 = last_log = time.perf_counter()
    with StoreWriter(store, o) as writer, CacheWriter(backends.cache, ttl) as cache:
        for chunk in range(start, total):
            lo, hi = chunk * o.chunk_users, min(n_users, (chunk + 1) * o.chunk_users)
            users, keys = _chunk_keys(model, lo, hi, tenant, version)
            payloads, cached = encoder.encode_both(lo, hi)
            gone = forgotten.deleted_since(tenant, users, since, deleted)
            if gone:
                kept = [n for n, u in enumerate(users) if u not in gone]
                stats.skipped_deleted += len(users) - len(kept)
                users, keys = [users[n] for n in kept], [keys[n] for n in kept]
                payloads, cached = [payloads[n] for n in kept], [cached[n] for n in kept]
            docs = [
                {
                    "id": candidates_doc_id(version, u),
                    "pk": user_partition(tenant, u),
                    "version": version,
                    **orjson.loads(p),
                }
                for u, p in zip(users, payloads, strict=True)
            ]
            cache.write(keys, cached)  # Redis works meanwhile
            writer.upsert_all(RECOMMENDATIONS, docs)
            cache.confirm()
            _write_checkpoint(store, tenant, version, n_users, o.chunk_users, total, chunk + 1)
            stats.chunks_written += 1
            now = time.perf_counter()
            if now - last_log >= o.progress_every_seconds:
                last_log = now
                done = hi - start * o.chunk_users
                log.info("tenant %s version %s: %d/%d users written (%.0f users/s, %d retries)",
                         tenant, version, hi, n_users, done / (now - t0), writer.retries)
        stats.store_retries = writer.retries
    stats.removed_deleted = _remove_deleted_meanwhile(backends, model, tenant, version, since)
    stats.seconds = time.perf_counter() - t0
    return stats


def _remove_deleted_meanwhile(backends: Backends, model: TrainedModel, tenant: str,
                              version: str, since: float) -> int:
    """Users deleted while the fill ran: a DELETE that came before the fill reached them found
    nothing of this version to remove, and the fill then wrote their lists (or an earlier,
    interrupted fill did). Removed here, before the version can be switched to; a DELETE
    after this point finds the lists and removes them itself (it records before deleting)."""
    records = {d: t for d, t in forgotten.forgotten(backends.store, tenant).items() if t >= since}
    if not records:
        return 0
    users = [str(u) for u in model.user_ids.tolist()]
    gone = sorted(forgotten.deleted_since(tenant, users, since, records))
    backends.store.delete_many(RECOMMENDATIONS, [
        (candidates_doc_id(version, u), user_partition(tenant, u)) for u in gone])
    backends.cache.delete([candidates_cache_key(tenant, version, u) for u in gone])
    if gone:
        log.info("tenant %s version %s: after the fill, removed any lists of %d users deleted "
                 "since it was staged", tenant, version, len(gone))
    return len(gone)


def fill_cache_only(cache: HotCache, model: TrainedModel, tenant: str, version: str,
                    ttl: int | None, chunk_users: int = CHUNK) -> int:
    """Only the cache half of a fill (what the fill benchmark times); returns users written."""
    encoder = CandidateEncoder(model)
    n_users = int(model.user_ids.shape[0])
    with CacheWriter(cache, ttl) as writer:
        for lo in range(0, n_users, chunk_users):
            hi = min(n_users, lo + chunk_users)
            _, keys = _chunk_keys(model, lo, hi, tenant, version)
            writer.write(keys, encoder.encode_codes(lo, hi))
    return n_users


def fill_cache_from_store(backends: Backends, tenant: str, version: str, ttl: int | None,
                          options: FillOptions | None = None) -> tuple[int, int]:
    """Rebuilds a version's cache entries from its store documents (after a cache flush).

    The user list comes from the version's artifact; returns (users found, users missing).
    """
    o = options or FillOptions()
    users = [str(u) for u in load_model(backends.artifacts, tenant, version).user_ids.tolist()]
    found = missing = 0
    with StoreWriter(backends.store, o) as writer:
        for lo in range(0, len(users), o.chunk_users):
            batch = users[lo : lo + o.chunk_users]
            docs: list[Document | None] = [None] * len(batch)

            def read(i: int, batch: list[str] = batch, docs: list[Document | None] = docs
                     ) -> None:
                u = batch[i]
                docs[i] = writer._with_retry(lambda: backends.store.read(
                    RECOMMENDATIONS, candidates_doc_id(version, u), user_partition(tenant, u)))

            writer._map(read, list(range(len(batch))))
            keys, values = [], []
            for u, doc in zip(batch, docs, strict=True):
                if doc is None:
                    missing += 1
                    continue
                keys.append(candidates_cache_key(tenant, version, u))
                values.append(orjson.dumps({"items": doc["items"], "scores": doc["scores"]}))
                found += 1
            write_cache(backends.cache, keys, values, ttl)
    return found, missing


# ---------------------------------------------------------------------------------------------
# Versions: stage, activate, expire, resume


def stage(backends: Backends, model: TrainedModel, tenant: str, rows: dict[str, int],
          manifest_extra: dict[str, Any] | None = None, version: str | None = None
          ) -> ModelVersion:
    """Writes the artifact and a version document marked "filling"; nothing is served yet.

    DataError for a tenant the tenant rule refuses: every entry point refuses it first, and
    here, where a tenant's versions (and cache keys) begin, no caller can get past it."""
    if not is_valid_tenant(tenant):
        raise DataError(tenant_error(tenant))
    created = datetime.now(UTC)
    version = version or new_version_id(created)
    manifest = manifest_of(model, tenant, version, created.isoformat(), rows, manifest_extra)
    write_artifact(backends.artifacts, model, manifest, _prefix(tenant, version))
    staged = ModelVersion(
        tenant=tenant,
        version=version,
        created=created.isoformat(),
        popular=model.popular_items(POPULAR_IN_VERSION),
        manifest=manifest,
    )
    # one write: a version document without a status would read as "ready"
    save_version(backends.store, staged, status=FILLING)
    return staged


def activate(backends: Backends, staged: ModelVersion, fill_stats: FillStats,
             options: FillOptions | None = None,
             before_switch: Callable[[], None] | None = None) -> Published:
    """Switches the tenant to the filled version, marks it ready, expires old versions.

    Switch first: interrupted before the mark, the version is active and still "filling", and
    `resume_pending` marks it; the other order left a ready version that nothing switched to.
    `before_switch` may raise to stop the switch (a retrain checks it still holds its lease).
    Raises ActiveChanged, switching nothing, when the version the staged one replaces (its
    manifest's `replaces`, the version its gate compared it with) is no longer the active
    one: a rollback away from it meanwhile stands. The switch is conditional on that version
    (one atomic write), so a rollback landing just before it is not overwritten either.
    """
    store, tenant = backends.store, staged.tenant
    if before_switch is not None:
        before_switch()
    # absent: staged before it was kept
    replaces = (staged.manifest["replaces"] if "replaces" in staged.manifest
                else active_version_id(store, tenant))
    if switch_active(store, tenant, staged.version, expected=replaces) is None:
        raise ActiveChanged(
            f"version {staged.version} was not switched to: it passed its gate against version "
            f"{replaces}, and version {active_version_id(store, tenant)} has been made active "
            "since (a rollback or another publish); the next run abandons it and trains afresh")
    previous = replaces
    mark_version(store, tenant, staged.version, READY, users=fill_stats.users)
    log.info("tenant %s: version %s active for %d users (was %s)",
             tenant, staged.version, fill_stats.users, previous)
    keep = {staged.version, previous}
    expired = expire_old_versions(backends, tenant, keep=keep, options=options)
    return Published(staged, previous, fill_stats, expired)


def expire_version(backends: Backends, tenant: str, version: str,
                   options: FillOptions | None = None) -> tuple[int, int] | None:
    """Deletes a version's cache keys and store documents; keeps its artifact and its record.

    The version is "expiring" before anything is deleted, so a rollback refuses it and a
    failure part-way leaves it for the next run to finish, never "ready" with half its lists.
    The pointer is read after that mark (a rollback switches, then reads the status): a version
    that has become active or previous meanwhile gets its status back and keeps its lists.
    Returns (cache keys deleted, store documents deleted), or None when it was kept.
    """
    store = backends.store
    doc = store.read(MODELS, version, tenant)
    before = version_status(doc or {})
    mark_version(store, tenant, version, EXPIRING)
    pointer = active_pointer(store, tenant) or {}
    if version in (pointer.get("version"), pointer.get("previous")):
        mark_version(store, tenant, version, before)
        log.warning("tenant %s: version %s is %s again (a rollback?); not expired", tenant,
                    version, "active" if version == pointer.get("version") else "previous")
        return None
    keys = backends.cache.delete_prefix(version_cache_prefix(tenant, version))
    try:
        users = [str(u) for u in load_model(backends.artifacts, tenant, version).user_ids.tolist()]
    except ArtifactNotFound:  # no artifact: find the documents the slow way
        users = [
            str(d["pk"]).split("|", 1)[1]
            for d in backends.store.scan(RECOMMENDATIONS, {"version": version})
            if str(d.get("pk", "")).startswith(f"{tenant}|")
        ]
    ids = [(candidates_doc_id(version, u), user_partition(tenant, u)) for u in users]
    with StoreWriter(backends.store, options or FillOptions()) as writer:
        docs = writer.delete_all(RECOMMENDATIONS, ids)
    backends.store.delete(MODELS, _checkpoint_id(version), tenant)
    mark_version(backends.store, tenant, version, EXPIRED,
                 expired=datetime.now(UTC).isoformat())
    log.info("tenant %s: expired version %s (%d cache keys, %d documents)",
             tenant, version, keys, docs)
    return keys, docs


def expire_old_versions(backends: Backends, tenant: str, keep: Iterable[str | None],
                        options: FillOptions | None = None) -> list[str]:
    """Expires every version but the ones to keep (the active one and its predecessor) and the
    pinned ones (an experiment variant serving an expired version would serve cold starts).

    A failure is logged, not raised: the switch has happened, and the next run tries again.
    """
    kept = {k for k in keep if k} | (options or FillOptions()).pinned
    expired: list[str] = []
    for doc in version_docs(backends.store, tenant):
        version = str(doc["id"])
        if version in kept or version_status(doc) == EXPIRED:
            continue
        try:
            if expire_version(backends, tenant, version, options) is not None:
                expired.append(version)
        except Exception as exc:
            log.warning("tenant %s: could not expire version %s yet: %s", tenant, version, exc)
    return expired


def pending_versions(store: DocumentStore, tenant: str) -> Iterator[dict[str, Any]]:
    """Version documents whose fill has not finished, newest first."""
    docs = [d for d in version_docs(store, tenant) if version_status(d) == FILLING]
    return iter(reversed(docs))


def resume_pending(backends: Backends, tenant: str, options: FillOptions,
                   before_switch: Callable[[], None] | None = None) -> Published | None:
    """Finishes the newest interrupted publish, if it is newer than the active version and
    was staged to replace it.

    Its model is read back from the artifact (it passed the gate when it was staged), the fill
    continues from its checkpoint, and the switch happens as in a normal publish. Older or
    abandoned interrupted versions are expired, and so is one staged to replace a version that
    is no longer active (rolled back from since): it was never compared with the one it would
    replace now.
    """
    store = backends.store
    pointer = active_pointer(store, tenant)
    active = None if pointer is None else str(pointer["version"])
    active_created = ""
    if active is not None:
        doc = store.read(MODELS, active, tenant)
        active_created = str((doc or {}).get("created", ""))
    for i, doc in enumerate(pending_versions(store, tenant)):
        version, created = str(doc["id"]), str(doc.get("created", ""))
        if version in (active, (pointer or {}).get("previous")):
            # switched to after its fill, interrupted before the mark (and maybe rolled back
            # from since): complete, so ready, never resumed over the pointer or expired
            log.info("tenant %s: marking version %s ready", tenant, version)
            mark_version(store, tenant, version, READY,
                         users=int(dict(doc.get("manifest") or {}).get("n_users", 0)))
            continue
        too_old = datetime.now(UTC) - datetime.fromisoformat(created) > PENDING_MAX_AGE
        manifest = read_manifest(backends.artifacts, tenant, version)
        if i > 0 or too_old or created <= active_created or manifest is None:
            log.info("tenant %s: abandoning unfinished version %s", tenant, version)
            expire_version(backends, tenant, version, options)
            continue
        if manifest.get("replaces", active) != active:  # absent: staged before it was kept
            log.info("tenant %s: abandoning unfinished version %s: it passed the gate against "
                     "version %s, and %s is active now", tenant, version, manifest["replaces"],
                     active)
            expire_version(backends, tenant, version, options)
            continue
        model = load_model(backends.artifacts, tenant, version)
        staged = ModelVersion(
            tenant=tenant, version=version, created=created,
            popular=[(str(a), float(b)) for a, b in doc.get("popular", [])],
            manifest=dict(doc.get("manifest", {})),
        )
        log.info("tenant %s: resuming the unfinished publish of version %s", tenant, version)
        stats = fill(backends, model, tenant, version, options=options)
        return activate(backends, staged, stats, options, before_switch)
    return None


def publish(backends: Backends, model: TrainedModel, tenant: str, rows: dict[str, int],
            cache_ttl_seconds: int | None = None, version: str | None = None,
            options: FillOptions | None = None,
            manifest_extra: dict[str, Any] | None = None) -> ModelVersion:
    """Stage, fill, switch: the whole publish for a model that has already passed its gate."""
    o = options or FillOptions(cache_ttl_seconds=cache_ttl_seconds)
    staged = stage(backends, model, tenant, rows, manifest_extra, version)
    stats = fill(backends, model, tenant, staged.version, options=o)
    return activate(backends, staged, stats, o).version
