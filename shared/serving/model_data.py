"""Per-version artifact data (item metadata, popularity, neighbours, the ONNX re-ranker), loaded
once per process in a background thread.

A request never waits for a reload: while a newly activated version loads, the tenant keeps
being served from the version loaded before it. Only a process that has nothing loaded yet for
a tenant waits, and at most `wait_seconds`, before answering from the version document alone.

Artifact files read here (all optional except what the version document already carries):
- `items.json`   {item_id: {"title": ..., "categories": [...]}}
- `item_stats.npz` item_ids, popularity, first_seen, last_seen, mean_weight (re-ranker stats);
  without it `candidates.npz` gives item_ids and popularity
- `popular.json` [[item_id, score], ...]
- `similar.npz`  item_ids, neighbours (items x n codes into item_ids, -1 padded), scores
- `reranker.onnx` with the manifest's `features` list

The manifest's `files` lists the artifact's files: a file it does not name was left in the
folder by another model and is not read (manifests without the list read every file).

The manifest's `candidate_codes` ({"items": n, "digest": ...}) names the item list that cached
candidate values index by code (the model's item list); a version whose first n item ids match
it reads those values without JSON or id lookups.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt
import orjson

from shared import telemetry
from shared.keys import (
    decode_candidate_codes,
    encode_candidate_codes,
    encode_candidates,
    item_list_digest,
)
from shared.model_registry import ModelVersion
from shared.reranking.features import FEATURES, ItemTable
from shared.serving import gc_settings
from shared.serving.item_index import ItemIndex
from shared.serving.resilience import CircuitBreaker
from shared.stores.artifacts import ArtifactNotFound, ArtifactStore

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
SIMILAR_FILE = "similar.npz"
RERANK_WIDTH = 50  # the re-ranker's training list length (training/pipeline.py n_candidates)
ITEM_STATS_FILE = "item_stats.npz"
STATIC_FEATURES = ["log_pop", "pop_pct", "mean_weight"]  # per item, not per request


@dataclass(frozen=True)
class FeatureTable:
    """Re-ranker inputs that depend on the item alone, by item code (built once per version).

    `rows` holds one full feature row per item with the item-only columns filled in and zeros
    elsewhere: a request gathers its candidates' rows in one `take` and only writes the
    columns that depend on the request.
    """

    rows: npt.NDArray[np.float32]  # items+1 x FEATURES, STATIC_FEATURES filled, others 0
    pop_floor: npt.NDArray[np.float64]  # max(popularity, 1): window_share's denominator
    seen: npt.NDArray[np.float64]  # items+1 x 2: first_seen, last_seen (unix seconds)
    categories: npt.NDArray[np.float32]  # items+1 x categories, 0/1
    category_norm: npt.NDArray[np.float32]  # each item's category vector length

    @classmethod
    def build(cls, table: ItemTable, pop_pct: npt.NDArray[np.float32]) -> FeatureTable:
        pop = table.popularity.astype(np.float64)
        static = {  # computed as build_features computes them (float64, then float32)
            "log_pop": np.log1p(pop),
            "pop_pct": pop_pct.astype(np.float64),
            "mean_weight": table.mean_weight.astype(np.float64),
        }
        assert list(static) == STATIC_FEATURES
        rows = np.zeros((pop.size, len(FEATURES)), dtype=np.float32)
        for name, values in static.items():
            rows[:, FEATURES.index(name)] = values.astype(np.float32)
        cats = np.ascontiguousarray(table.categories, dtype=np.float32)
        return cls(
            rows=rows,
            pop_floor=np.maximum(pop, 1.0),
            seen=np.stack([table.first_seen, table.last_seen], axis=1).astype(np.float64),
            categories=cats,
            category_norm=np.linalg.norm(cats, axis=1).astype(np.float32),
        )


class Reranker:
    """An ONNX session scoring feature rows; one thread per call, shared by all requests."""

    def __init__(self, onnx_bytes: bytes, features: list[str], width: int = 50) -> None:
        import onnxruntime as ort

        self.width = width  # candidates it re-ranks: as many as it was trained on

        missing = [f for f in features if f not in FEATURES]
        if missing:
            raise ValueError(f"re-ranker needs features this code does not build: {missing}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.features = features
        # Column selection only when the model's list differs from the builder's order.
        cols = [FEATURES.index(f) for f in features]
        self.columns: list[int] | None = None if cols == list(range(len(FEATURES))) else cols
        outputs = [o.name for o in self.session.get_outputs()]
        # Versions published before the re-ranker became a regressor carry a classifier.
        self.output = "probabilities" if "probabilities" in outputs else outputs[-1]
        # One row now: a model whose input disagrees with the feature list (it opens fine)
        # must fail here, at load, not in every request
        self.score(np.zeros((1, len(FEATURES)), dtype=np.float32))

    def score(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x = rows if self.columns is None else rows[:, self.columns]
        out = self.session.run([self.output], {self.input_name: np.ascontiguousarray(x)})[0]
        arr = np.asarray(out, dtype=np.float32)
        return arr[:, -1] if arr.ndim == 2 else arr.ravel()


class CodedItems(Sequence[str]):
    """The ids of a coded candidate list, each looked up when read: a request reads about k of
    its ~100 candidates, and touching every id string costs a cache miss each."""

    __slots__ = ("_codes", "ids")

    def __init__(self, ids: list[str], codes: IntArray) -> None:
        self.ids = ids  # the version's item ids, by code
        self._codes = codes

    def __len__(self) -> int:
        return len(self._codes)

    @overload
    def __getitem__(self, n: int) -> str: ...
    @overload
    def __getitem__(self, n: slice) -> CodedItems: ...
    def __getitem__(self, n: int | slice) -> str | CodedItems:
        if isinstance(n, slice):
            return CodedItems(self.ids, self._codes[n])
        return self.ids[self._codes[n]]


class Candidates(NamedTuple):
    """One user's candidate list, best first: ids, generator scores and item codes."""

    items: Sequence[str]
    scores: FloatArray
    codes: IntArray


@dataclass
class VersionData:
    """Everything serving needs from one version's artifact, indexed by item code.

    Code `n_items` is a sentinel row of zeros for items the artifact does not know, so feature
    arrays never need bounds checks.
    """

    tenant: str
    version: str
    model: ModelVersion
    item_ids: list[str]
    index: dict[str, int]
    meta: dict[str, dict[str, Any]]
    category_names: list[str]
    category_index: dict[str, int]
    item_categories: npt.NDArray[np.bool_]  # (items+1) x categories
    table: ItemTable
    pop_pct: npt.NDArray[np.float32]
    popular: list[tuple[str, float]]
    neighbours: IntArray | None = None  # items x n codes, -1 padded
    neighbour_scores: npt.NDArray[np.float32] | None = None
    reranker: Reranker | None = None
    complete: bool = True  # False: built from the version document only (artifact unreadable)
    coded: int = 0  # cached values may hold codes below this (see the module docstring)
    loaded_at: float = field(default_factory=time.time)
    popular_ids: list[str] = field(init=False)
    popular_scores: npt.NDArray[np.float32] = field(init=False)
    category_codes: list[tuple[int, ...]] = field(init=False)  # per item code, for diversity
    _features: FeatureTable | None = field(init=False, default=None, repr=False)
    _item_index: ItemIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows, cols = np.nonzero(self.item_categories)
        per_item: list[list[int]] = [[] for _ in range(self.item_categories.shape[0])]
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            per_item[r].append(c)
        self.category_codes = [tuple(c) for c in per_item]
        self.popular_ids = [i for i, _ in self.popular]
        self.popular_scores = np.array([s for _, s in self.popular], dtype=np.float32)
        self._item_index = ItemIndex(self.index, self.n_items)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def feature_table(self) -> FeatureTable:
        """Per-item re-ranker columns, built on first use (a race only builds it twice)."""
        table = self._features
        if table is None:
            table = self._features = FeatureTable.build(self.table, self.pop_pct)
        return table

    def codes(self, items: Sequence[str]) -> IntArray:
        """Item codes (`n_items` for unknown ids)."""
        return self._item_index.codes(items)

    def candidates(self, raw: bytes | dict[str, Any]) -> Candidates:
        """A cached value (codes or JSON) or a store document, as the request path ranks it.

        Raises ValueError, KeyError or TypeError for a value it cannot read.
        """
        if isinstance(raw, dict):  # a store document: ids made strings, it may hold anything
            items = [str(i) for i in raw["items"]]
            scores = np.asarray(raw["scores"], dtype=np.float32).ravel()
        else:
            coded = decode_candidate_codes(raw)
            if coded is not None:
                codes32, scores = coded
                if not self.coded:
                    raise ValueError("a coded value for a version whose item list is unknown")
                # as unsigned, a negative code is huge: one reduction checks both bounds
                if codes32.size and np.maximum.reduce(codes32.view("<u4")) >= self.coded:
                    raise ValueError("item codes outside the version's item list")
                codes = codes32.astype(np.int64)
                return Candidates(CodedItems(self.item_ids, codes), scores, codes)
            data = orjson.loads(raw)
            items, score_list = data["items"], data["scores"]
            if type(items) is not list or not all(type(i) is str for i in items):
                raise TypeError("items is not a list of ids")
            scores = np.fromiter(score_list, np.float32, len(score_list))
            if not np.isfinite(scores).all():
                raise ValueError("scores that are not finite numbers")
        if scores.size != len(items):
            raise ValueError(f"{len(items)} items but {scores.size} scores")
        return Candidates(items, scores, self.codes(items))

    def cache_value(self, found: Candidates) -> bytes:
        """What the cache holds for these candidates: codes when the version allows it."""
        if self.coded and (found.codes.size == 0 or int(found.codes.max()) < self.coded):
            return encode_candidate_codes(found.codes, found.scores)
        return encode_candidates(list(found.items), found.scores.tolist())

    def categories_of(self, code: int) -> list[str]:
        return [self.category_names[j] for j in self.category_codes[code]]

    def popular_in(self, categories: list[str], n: int) -> list[tuple[str, float]]:
        """Popular items sharing any of `categories` (all popular items when none given)."""
        cols = [self.category_index[c] for c in categories if c in self.category_index]
        if not categories:
            return self.popular[:n]
        if not cols:
            return []
        out = []
        for item, score in self.popular:
            code = self.index.get(item, self.n_items)
            if self.item_categories[code, cols].any():
                out.append((item, score))
                if len(out) >= n:
                    break
        return out


def _item_table(
    item_ids: list[str], stats: dict[str, npt.NDArray[Any]], cats: npt.NDArray[np.bool_]
) -> ItemTable:
    n = len(item_ids)

    def col(name: str, dtype: Any, default: float) -> npt.NDArray[Any]:
        values = stats.get(name)
        arr = np.full(n + 1, default, dtype=dtype)
        if values is not None and len(values) == n:
            arr[:n] = np.asarray(values, dtype=dtype)
        arr[n] = default
        return arr

    return ItemTable(
        popularity=col("popularity", np.float32, 0.0),
        first_seen=col("first_seen", np.float64, 0.0),
        last_seen=col("last_seen", np.float64, 0.0),
        mean_weight=col("mean_weight", np.float32, 1.0),
        categories=cats.astype(np.float32),
    )


def _get_optional(artifacts: ArtifactStore, path: str) -> bytes | None:
    try:
        return artifacts.get(path)
    except ArtifactNotFound:
        return None


def _npz(data: bytes | None, *names: str) -> dict[str, npt.NDArray[Any]]:
    if data is None:
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {n: f[n] for n in names if n in f.files}


def load_version(artifacts: ArtifactStore, model: ModelVersion) -> VersionData:
    """Reads the version's artifact; missing optional files are tolerated, backend errors raise."""
    prefix = f"{model.tenant}/{model.version}"
    manifest_raw = _get_optional(artifacts, f"{prefix}/manifest.json")
    manifest = json.loads(manifest_raw) if manifest_raw else dict(model.manifest)
    listed = manifest.get("files")  # absent in artifacts written before it was kept

    def optional(name: str) -> bytes | None:
        """A file of this artifact; one the manifest does not name was left by another, and
        one it names must be there (a version missing it is not served: the previous stays)."""
        if isinstance(listed, list):
            if name not in listed:
                return None
            return artifacts.get(f"{prefix}/{name}")  # ArtifactNotFound fails the load
        return _get_optional(artifacts, f"{prefix}/{name}")

    meta_raw = optional("items.json")
    meta: dict[str, dict[str, Any]] = json.loads(meta_raw) if meta_raw else {}
    stats = _npz(
        optional(ITEM_STATS_FILE),
        "item_ids", "popularity", "first_seen", "last_seen", "mean_weight",
    )
    if "item_ids" not in stats:
        stats = _npz(optional("candidates.npz"), "item_ids", "popularity")
    popular_raw = optional("popular.json")
    popular = (
        [(str(i), float(s)) for i, s in json.loads(popular_raw)]
        if popular_raw
        else list(model.popular)
    )
    item_ids = [str(i) for i in stats.get("item_ids", [])]
    known = set(item_ids)
    for extra in [*meta, *(i for i, _ in popular)]:
        if extra not in known:
            known.add(extra)
            item_ids.append(extra)
    if len(item_ids) != len(stats.get("item_ids", [])):
        stats = {k: v for k, v in stats.items() if k == "item_ids"}  # lengths no longer match
        pop = dict(popular)
        stats["popularity"] = np.array([pop.get(i, 0.0) for i in item_ids], np.float32)
    index = {item: code for code, item in enumerate(item_ids)}
    names = sorted({str(c) for m in meta.values() for c in m.get("categories", []) or []})
    cat_index = {c: j for j, c in enumerate(names)}
    cats = np.zeros((len(item_ids) + 1, len(names)), dtype=np.bool_)
    for item, m in meta.items():
        for c in m.get("categories", []) or []:
            cats[index[item], cat_index[str(c)]] = True
    table = _item_table(item_ids, stats, cats)
    neighbours, nscores = _load_similar(
        optional(SIMILAR_FILE), index, len(item_ids)
    )
    reranker = None
    onnx_raw = optional("reranker.onnx")
    if onnx_raw is not None:
        features = [str(f) for f in manifest.get("features") or FEATURES]
        width = int(manifest.get("reranker_candidates") or RERANK_WIDTH)
        try:
            reranker = Reranker(onnx_raw, features, width)
        except Exception as exc:  # a broken model must not take serving down
            log.error("version %s: re-ranker not usable, serving without it: %s",
                      model.version, exc)
    return VersionData(
        tenant=model.tenant,
        version=model.version,
        model=model,
        item_ids=item_ids,
        index=index,
        meta=meta,
        category_names=names,
        category_index=cat_index,
        item_categories=cats,
        table=table,
        pop_pct=table.pop_percentile,
        popular=popular,
        neighbours=neighbours,
        neighbour_scores=nscores,
        reranker=reranker,
        coded=_coded_items(manifest, item_ids),
    )


def _coded_items(manifest: dict[str, Any], item_ids: list[str]) -> int:
    """How many leading item ids cached codes may index: the manifest's item list, if this
    version's list starts with exactly it (else 0: coded values are read from the store)."""
    spec = manifest.get("candidate_codes")
    if not isinstance(spec, dict):
        return 0
    n = spec.get("items")
    if not isinstance(n, int) or not 0 < n <= len(item_ids):
        return 0
    if item_list_digest(item_ids[:n]) != spec.get("digest"):
        log.warning("version %s: cached item codes do not match the artifact's item list; "
                    "candidates are read from the store", manifest.get("version"))
        return 0
    return n


def minimal_version(model: ModelVersion) -> VersionData:
    """What can be served from the version document alone: its popular list, no re-ranker."""
    item_ids = [i for i, _ in model.popular]
    cats = np.zeros((len(item_ids) + 1, 0), dtype=np.bool_)
    stats = {"popularity": np.array([s for _, s in model.popular], np.float32)}
    table = _item_table(item_ids, stats, cats)
    return VersionData(
        tenant=model.tenant, version=model.version, model=model, item_ids=item_ids,
        index={i: c for c, i in enumerate(item_ids)}, meta={}, category_names=[],
        category_index={}, item_categories=cats, table=table, pop_pct=table.pop_percentile,
        popular=list(model.popular), complete=False,
    )


def _load_similar(
    raw: bytes | None, index: dict[str, int], n_items: int
) -> tuple[IntArray | None, npt.NDArray[np.float32] | None]:
    data = _npz(raw, "item_ids", "neighbours", "scores")
    if "neighbours" not in data or "item_ids" not in data:
        return None, None
    ids = [str(i) for i in data["item_ids"]]
    own = np.array([index.get(i, -1) for i in ids] + [-1], dtype=np.int64)
    nb = np.asarray(data["neighbours"], dtype=np.int64)
    width = nb.shape[1] if nb.ndim == 2 else 0
    out = np.full((n_items, width), -1, dtype=np.int64)
    scores = np.zeros((n_items, width), dtype=np.float32)
    rows = own[:-1] >= 0
    mapped = own[np.where(nb >= 0, nb, len(ids))]  # -1 stays -1 through the sentinel
    out[own[:-1][rows]] = mapped[rows]
    if "scores" in data:
        scores[own[:-1][rows]] = np.asarray(data["scores"], np.float32)[rows]
    return out, scores


def encode_similar(
    item_ids: npt.ArrayLike, neighbours: npt.ArrayLike, scores: npt.ArrayLike
) -> bytes:
    """The `similar.npz` artifact file (for publish): neighbour codes index `item_ids`."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        item_ids=np.asarray(item_ids).astype(str),
        neighbours=np.asarray(neighbours, dtype=np.int32),
        scores=np.asarray(scores, dtype=np.float32),
    )
    return buf.getvalue()


def cooccurrence_neighbours(
    user_codes: npt.ArrayLike, item_codes: npt.ArrayLike, n_items: int, n: int = 20
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Top-n items co-occurring with each item (cosine of binary user vectors), -1 padded.

    For versions whose generator has no `similar_items`; sparse, so fine for large catalogs.
    """
    from scipy import sparse

    users = np.asarray(user_codes, dtype=np.int64)
    items = np.asarray(item_codes, dtype=np.int64)
    n_users = int(users.max()) + 1 if users.size else 0
    m = sparse.csr_matrix(
        (np.ones(users.size, np.float32), (users, items)), shape=(n_users, n_items)
    )
    m.data[:] = 1.0
    co = (m.T @ m).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    norms = np.sqrt(np.asarray(m.sum(axis=0)).ravel()).astype(np.float32)
    out = np.full((n_items, n), -1, dtype=np.int32)
    scores = np.zeros((n_items, n), dtype=np.float32)
    for i in range(n_items):
        lo, hi = co.indptr[i], co.indptr[i + 1]
        if lo == hi:
            continue
        cols = co.indices[lo:hi]
        sims = co.data[lo:hi] / np.maximum(norms[i] * norms[cols], 1e-9)
        top = np.argsort(-sims, kind="stable")[:n]
        out[i, : top.size] = cols[top]
        scores[i, : top.size] = sims[top]
    return out, scores


def _created_unix(model: ModelVersion) -> float:
    """When the version was created (unix seconds; now if the document's date is unreadable)."""
    try:
        created = datetime.fromisoformat(model.created)
    except ValueError:
        return time.time()
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created.timestamp()


class _GuardedArtifacts:
    """The artifact store with each read under the artifacts breaker: storage failures count,
    a file that is missing or that does not parse (one tenant's broken artifact) does not,
    so it cannot stop other tenants' versions from loading."""

    def __init__(self, artifacts: ArtifactStore, breaker: CircuitBreaker) -> None:
        self._artifacts = artifacts
        self._breaker = breaker
        self.name = getattr(artifacts, "name", "artifacts")

    def _read(self, path: str) -> bytes | None:
        try:
            return self._artifacts.get(path)
        except ArtifactNotFound:
            return None  # an answer from a working store

    def get(self, path: str) -> bytes:
        found = self._breaker.call(lambda: self._read(path))
        if found is None:
            raise ArtifactNotFound(path)
        return found

    def put(self, path: str, data: bytes) -> None:
        self._artifacts.put(path, data)

    def list(self, prefix: str) -> list[str]:
        return self._breaker.call(lambda: self._artifacts.list(prefix))

    def ping(self) -> bool:
        return self._artifacts.ping()


class ModelCache:
    """Loaded versions per tenant; loads happen on one background thread, never in a request.

    `for_model(active)` returns the active version's data once loaded, the tenant's previous
    data while it loads, and, only when the tenant has nothing loaded at all, waits up to
    `wait_seconds` and then falls back to `minimal_version` (marked incomplete, retried later).
    """

    def __init__(self, artifacts: ArtifactStore, breaker: CircuitBreaker,
                 wait_seconds: float = 10.0, retry_seconds: float = 5.0,
                 loader: Callable[[ArtifactStore, ModelVersion], VersionData] = load_version,
                 ) -> None:
        self._artifacts = _GuardedArtifacts(artifacts, breaker)
        self._wait = wait_seconds
        self._retry = retry_seconds
        self.loader = loader
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], VersionData] = {}
        self._current: dict[str, VersionData] = {}
        self._wanted: dict[str, str] = {}
        self._loading: dict[tuple[str, str], Future[VersionData]] = {}
        self._failed_at: dict[tuple[str, str], float] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")

    def current(self, tenant: str) -> VersionData | None:
        return self._current.get(tenant)

    def loaded(self, tenant: str, version: str) -> VersionData | None:
        data = self._loaded.get((tenant, version))
        return data if data is not None and data.complete else None

    def for_model_nowait(self, model: ModelVersion) -> VersionData | None:
        """`for_model(model)` when it would not wait for a load, else None (async callers then
        call `for_model` in a thread)."""
        data = self._loaded.get((model.tenant, model.version))
        if data is not None and data.complete and self._current.get(model.tenant) is data:
            return data
        if self._current.get(model.tenant) is None and data is None:
            return None  # nothing loaded for the tenant: for_model may wait
        return self.for_model(model)  # also makes a loaded one current (a rollback to it)

    def for_model(self, model: ModelVersion, active: bool = True) -> VersionData:
        key = (model.tenant, model.version)
        data = self._loaded.get(key)
        if data is not None and data.complete:
            if active and self._current.get(model.tenant) is not data:
                # e.g. a rollback to a version still in memory: it is the one served now
                with self._lock:
                    self._current[model.tenant] = data
                    self._wanted[model.tenant] = model.version
                telemetry.model_served(model.tenant, model.version, _created_unix(model))
            return data
        if active:
            self._wanted[model.tenant] = model.version
        future = self._start(model)
        current = self._current.get(model.tenant)
        if current is not None and (active or data is None):
            return current  # keep serving what is loaded until the new version is ready
        if data is not None:
            return data  # incomplete: a retry is scheduled
        if future is not None:
            try:
                return future.result(timeout=self._wait)
            except FutureTimeout:
                log.warning("version %s still loading after %.1f s", model.version, self._wait)
            except Exception as exc:
                log.warning("version %s failed to load: %s", model.version, exc)
        fallback = minimal_version(model)
        with self._lock:
            self._loaded.setdefault(key, fallback)
            if active and self._current.setdefault(model.tenant, fallback) is fallback:
                telemetry.model_served(model.tenant, model.version, _created_unix(model))
        return fallback

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Blocks until pending loads finish (tests, warm-up)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._loading.values())
            if not pending:
                return
            for f in pending:
                try:
                    f.result(timeout=max(deadline - time.monotonic(), 0.01))
                except Exception:
                    if time.monotonic() >= deadline:
                        return
            time.sleep(0.001)

    def _start(self, model: ModelVersion) -> Future[VersionData] | None:
        key = (model.tenant, model.version)
        with self._lock:
            running = self._loading.get(key)
            if running is not None:
                return running
            failed = self._failed_at.get(key)
            if failed is not None and time.monotonic() - failed < self._retry:
                return None
            future = self._pool.submit(self._load, model)
            self._loading[key] = future
            return future

    def _load(self, model: ModelVersion) -> VersionData:
        key = (model.tenant, model.version)
        try:
            data = self.loader(self._artifacts, model)  # reads under the breaker, not parsing
            if data.reranker is not None:
                data.feature_table  # noqa: B018 - built here, off the request path
        except Exception as exc:
            log.warning("version %s/%s: artifact not loaded (%s); retrying later",
                        model.tenant, model.version, exc)
            with self._lock:
                self._failed_at[key] = time.monotonic()
                self._loading.pop(key, None)
            raise
        with self._lock:
            self._loaded[key] = data
            self._failed_at.pop(key, None)
            if self._wanted.get(model.tenant) == model.version or model.tenant not in self._current:
                previous = self._current.get(model.tenant)
                self._current[model.tenant] = data
                telemetry.model_served(model.tenant, model.version, _created_unix(model))
                if previous is not None and previous.version != model.version:
                    log.info("tenant %s: now serving version %s (was %s)",
                             model.tenant, model.version, previous.version)
            self._evict(model.tenant)
            self._loading.pop(key, None)
        gc_settings.settle_after_load()
        return data

    def _evict(self, tenant: str, keep: int = 3) -> None:
        """Keeps the tenant's current version and the most recently loaded others."""
        versions = sorted(
            (d for (t, _), d in self._loaded.items() if t == tenant),
            key=lambda d: d.loaded_at, reverse=True,
        )
        current = self._current.get(tenant)
        for d in versions[keep:]:
            if current is None or d.version != current.version:
                self._loaded.pop((tenant, d.version), None)
