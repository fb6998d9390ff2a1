"""The request path: top k for a user, similar items, popular and trending lists.

For a user: one pipelined Redis round trip reads the candidates and the user's online state;
on a miss, one Cosmos point read (written back to Redis); for an unknown user, a cold-start
list (content-based from the request context or the user's fresh events, then trending, then
popular). Then the ONNX re-ranker, filters, business rules and diversity pick the top k.

A backend that fails does not fail the request: breakers stop calling it, the next source is
used and the answer is marked degraded; the last resort is the popular list loaded with the
model version.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import orjson

from shared import forgotten, telemetry
from shared.feedback.process import DEADLETTERS
from shared.keys import candidates_cache_key, candidates_doc_id, user_partition
from shared.model_registry import MODELS, ActiveModels, ModelVersion
from shared.online_state import OnlineState, RankingState, UserState
from shared.serving.experiments import Experiments
from shared.serving.model_data import Candidates, ModelCache, VersionData
from shared.serving.ranking import (
    RerankInput,
    Scored,
    Source,
    rerank,
    rerank_input,
    select,
)
from shared.serving.rerank_batch import RerankBatcher
from shared.serving.resilience import BreakerOpen, Breakers, Retry
from shared.serving.rules import Rules
from shared.stores.cache import BadReply
from shared.stores.errors import BackendError
from shared.stores.factory import Backends

log = logging.getLogger(__name__)

RECOMMENDATIONS = "recommendations"
EVENTS = "events"
EMPTY_STATE = UserState()
NOTHING_KNOWN = RankingState()  # a user without online state, or state unreadable
TRENDING_DEPTH = 500  # trending items read per tenant (features and the trending list)
FloatArray = npt.NDArray[np.float32]


def new_id() -> str:
    """A random 128-bit id in hex, like uuid4().hex without building a UUID object."""
    return os.urandom(16).hex()


class NoActiveModel(LookupError):
    """The tenant has no published model yet (or the tenant is unknown)."""


class RegistryUnavailable(RuntimeError):
    """This process has never seen the tenant and the store cannot be read to find its model."""


class DeletionIncomplete(BackendError):
    """A backend failed part-way through deleting a user: `removed_so_far` counts what had
    gone by kind (for the caller); the message adds the backend's error (for the log)."""

    def __init__(self, message: str, removed_so_far: str) -> None:
        super().__init__(message)
        self.removed_so_far = removed_so_far


class Query(NamedTuple):
    """One recommendation request, validated (named tuples here and below: each request builds
    them, and a frozen dataclass costs several times more to build)."""

    tenant: str
    user_id: str
    k: int = 10
    exclude: frozenset[str] = frozenset()
    categories: tuple[str, ...] = ()
    recent: tuple[str, ...] = ()  # the app's session context, most recent first


class _Plan(NamedTuple):
    """What one request is served with: the version's data, its cache key, the variant (a
    named tuple: built on every request, and a frozen dataclass costs several times more)."""

    data: VersionData
    key: str
    use_reranker: bool
    share: float
    experiment: str | None
    variant: str | None


def items_json(items: Sequence[Scored]) -> list[dict[str, Any]]:
    """An answer's items as the API shows them: the rank is the position, from 1."""
    return [{"itemId": s.item_id, "score": s.score, "rank": n}
            for n, s in enumerate(items, start=1)]


class Answer(NamedTuple):
    tenant: str
    user_id: str
    model_version: str
    source: str
    items: list[Scored]  # best first
    recommendation_id: str  # new_id(): sent back with impression and click events
    experiment: str | None = None
    variant: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps({
            "tenant": self.tenant,
            "userId": self.user_id,
            "modelVersion": self.model_version,
            "source": self.source,
            "recommendationId": self.recommendation_id,
            "experiment": self.experiment,
            "variant": self.variant,
            "items": items_json(self.items),
        })


@dataclass(frozen=True, slots=True)
class ItemList:
    """Popular, trending or similar items: not personalised, same item shape."""

    tenant: str
    model_version: str
    source: str
    items: list[Scored]  # best first
    recommendation_id: str = field(default_factory=new_id)

    def to_json(self) -> bytes:
        return orjson.dumps({
            "tenant": self.tenant,
            "modelVersion": self.model_version,
            "source": self.source,
            "recommendationId": self.recommendation_id,
            "items": items_json(self.items),
        })


def _recent(q: Query, state: RankingState) -> list[str]:
    """The user's recent items, most recent first: the request's context, then online state."""
    if not q.recent or not state.recent:
        return [*q.recent, *state.recent]
    return [*q.recent, *(i for i in state.recent if i not in q.recent)]


def _new_in_categories(data: VersionData, trending: list[tuple[str, float]],
                       categories: Sequence[str]) -> frozenset[str]:
    """Items of the requested categories' trending lists that the version does not know (new
    items; the app named their category in `context.category`): the version's metadata
    cannot place them, the trending list already has."""
    if not categories or not trending:
        return frozenset()
    return frozenset(i for i, _ in trending if i not in data.index)


def _head_input(data: VersionData, found: Candidates, recent: Sequence[str],
                state: RankingState, window: FloatArray | None) -> RerankInput:
    """The re-ranker's input for the head of the list (the length it was trained on)."""
    assert data.reranker is not None
    w = data.reranker.width
    return rerank_input(data, found.codes[:w], found.scores[:w], recent, window,
                        float(len(state.recent)))


class Recommender:
    def __init__(
        self,
        backends: Backends,
        active: ActiveModels,
        cache_ttl_seconds: int,
        online: OnlineState | None = None,
        *,
        rules: Rules | None = None,
        experiments: Experiments | None = None,
        breakers: Breakers | None = None,
        diversity: float = 0.5,
        retry: Retry | None = None,
        load_wait_seconds: float = 10.0,
    ) -> None:
        self._b = backends
        self._active = active
        self._ttl = cache_ttl_seconds
        self.online = online
        self.rules = rules or Rules()
        self.experiments = experiments or Experiments()
        self.breakers = breakers or Breakers.build(5, 5.0)
        self.diversity = diversity
        self._retry = retry or Retry()
        self.models = ModelCache(backends.artifacts, self.breakers.artifacts, load_wait_seconds)
        self._batcher = RerankBatcher()
        # (tenant, version) -> (refresh after, trending rows it was built from, by item code)
        self._window_memo: dict[tuple[str, str], tuple[float, object, FloatArray | None]] = {}
        self._window_refreshing: set[str] = set()
        # (tenant, version) a variant names but the tenant does not have -> when to look again
        self._unknown_variant_versions: dict[tuple[str, str], float] = {}
        config = getattr(online, "config", None)
        self._window_seconds = max(float(getattr(config, "trending_read_cache_seconds", 5)), 1.0)
        active.use_guard(lambda fn: self.breakers.store.call(fn, self._retry))

    @classmethod
    def from_settings(cls, settings: Any, backends: Backends, active: ActiveModels,
                      online: OnlineState | None) -> Recommender:
        return cls(
            backends, active, settings.cache_ttl_seconds, online,
            rules=Rules.from_settings(settings.rules, settings.rules_file),
            experiments=Experiments.parse(settings.experiments),
            breakers=Breakers.build(settings.breaker_failures, settings.breaker_reset_seconds),
            diversity=settings.diversity_max_share,
            retry=Retry(attempts=settings.read_retry_attempts),
            load_wait_seconds=settings.model_load_wait_seconds,
        )

    # -- models ----------------------------------------------------------------------------

    def model_for(self, tenant: str) -> ModelVersion:
        try:
            model = self._active.get(tenant)
        except Exception as exc:
            raise RegistryUnavailable(
                f"the model registry cannot be read for tenant '{tenant}': {exc}"
            ) from None
        if model is None:
            raise NoActiveModel(f"no model has been published for tenant '{tenant}'")
        return model

    def data_for(self, tenant: str) -> VersionData:
        return self.models.for_model(self.model_for(tenant))

    def category_of(self, tenant: str, item_id: str) -> str | None:
        """The item's first category in the tenant's version (feedback's trending per category
        uses it); None when unknown. Loads the version in a process that has not yet (a
        feedback worker serves no requests), so early events are counted in their category."""
        data = self.models.current(tenant)
        if data is None:
            try:
                data = self.data_for(tenant)
            except Exception as exc:  # no model yet, or the registry is unreadable: no category
                log.debug("no category for tenant %s: %s", tenant, exc)
                return None
        code = data.index.get(item_id)
        if code is None:
            return None
        cats = data.categories_of(code)
        return cats[0] if cats else None

    def warm(self, tenant: str) -> None:
        """Reads the tenant's active version and loads its artifact (start-up, tests)."""
        try:
            self.data_for(tenant)
        except (NoActiveModel, RegistryUnavailable) as exc:
            log.info("warm-up of tenant %s skipped: %s", tenant, exc)
        self.models.wait_idle()

    # -- backend reads, each under its breaker ---------------------------------------------

    def _read_user(self, tenant: str, user_id: str, key: str
                   ) -> tuple[RankingState, bytes | None]:
        online = self.online
        if online is None:
            return NOTHING_KNOWN, self.breakers.cache.call(lambda: self._b.cache.get(key),
                                                           self._retry)
        return self.breakers.cache.call(
            lambda: online.read_ranking_with(tenant, user_id, key), self._retry
        )

    def _user_state(self, tenant: str, user_id: str) -> tuple[UserState, bool]:
        """The user's online state and whether reading it failed."""
        if self.online is None:
            return EMPTY_STATE, False
        online = self.online
        try:
            return self.breakers.cache.call(
                lambda: online.read_user(tenant, user_id), self._retry
            ), False
        except Exception as exc:
            log.debug("online state unavailable: %s", exc)
            return EMPTY_STATE, True

    def _from_store(self, tenant: str, data: VersionData, user_id: str, key: str,
                    write_back: bool) -> tuple[Candidates | None, bool]:
        """The user's stored candidates (or None) and whether the store failed."""
        try:
            doc = self.breakers.store.call(
                lambda: self._b.store.read(
                    RECOMMENDATIONS, candidates_doc_id(data.version, user_id),
                    user_partition(tenant, user_id),
                ),
                self._retry,
            )
        except BreakerOpen:
            return None, True  # known to be down: logged when the breaker opened
        except Exception as exc:
            log.warning("store read failed, answering from cold start: %s", exc)
            return None, True
        if doc is None:
            return None, False
        try:
            found = data.candidates(doc)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable store document of a user (version %s), answering from "
                        "cold start: %s", data.version, exc)  # no key: it holds the user id
            return None, False
        if write_back:
            value = data.cache_value(found)
            try:
                self.breakers.cache.call(lambda: self._b.cache.set_many({key: value}, self._ttl))
            except BreakerOpen:
                pass
            except Exception as exc:
                log.warning("cache write-back failed: %s", exc)
            else:
                self._unless_forgotten(tenant, user_id, key)
        return found, False

    def _unless_forgotten(self, tenant: str, user_id: str, key: str) -> None:
        """Takes a write-back back if the user was deleted meanwhile: DELETE marks the user
        before it deletes anything, so either this check sees the mark or the write-back came
        before the deletion's own cache delete."""
        online = self.online
        if online is None:
            return
        try:
            if self.breakers.cache.call(lambda: online.forgotten_marks([(tenant, user_id)])):
                self.breakers.cache.call(lambda: self._b.cache.delete([key]))
        except Exception as exc:  # the entry lapses with its TTL; DELETE's retry removes it
            log.warning("could not check a cache write-back against deletions: %s", exc)

    def _trending(self, tenant: str, categories: Sequence[str] = (),
                  n: int = TRENDING_DEPTH) -> tuple[list[tuple[str, float]], bool]:
        """Trending items (merged over the categories) and whether the read failed."""
        if self.online is None:
            return [], False
        online = self.online
        try:
            if not categories:
                return self.breakers.cache.call(lambda: online.trending(tenant, n)), False
            merged: dict[str, float] = {}
            for cat in categories:
                for item, score in self.breakers.cache.call(
                    lambda c=cat: online.trending(tenant, n, c)  # type: ignore[misc]
                ):
                    merged[item] = max(score, merged.get(item, score))
            return sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:n], False
        except Exception as exc:
            log.debug("trending unavailable: %s", exc)
            return [], True

    def _window_pop(self, tenant: str, data: VersionData) -> FloatArray | None:
        """Trending scores by item code for the re-ranker's window features (None: none yet),
        rebuilt when the trending list changes (it is itself cached for a few seconds)."""
        rows, _ = self._trending(tenant)
        key = (tenant, data.version)
        memo = self._window_memo.get(key)
        if memo is not None and memo[1] is rows:
            self._window_memo[key] = (time.monotonic() + self._window_seconds, rows, memo[2])
            return memo[2]
        arr: FloatArray | None = None
        if rows:
            arr = np.zeros(data.n_items + 1, dtype=np.float32)
            get = data.index.get
            for item, score in rows:
                code = get(item)
                if code is not None:
                    arr[code] = score
        if len(self._window_memo) > 1000:
            self._window_memo.clear()
        self._window_memo[key] = (time.monotonic() + self._window_seconds, rows, arr)
        return arr

    async def _window_pop_async(self, tenant: str, data: VersionData) -> FloatArray | None:
        """`_window_pop` without blocking the event loop: a stale value is served while one
        background thread refreshes it; only the first request of a version waits for it."""
        memo = self._window_memo.get((tenant, data.version))
        if memo is None:
            return await anyio.to_thread.run_sync(self._window_pop, tenant, data)
        if memo[0] < time.monotonic() and tenant not in self._window_refreshing:
            self._window_refreshing.add(tenant)

            def refresh() -> None:
                try:
                    self._window_pop(tenant, data)
                finally:
                    self._window_refreshing.discard(tenant)

            threading.Thread(target=refresh, name=f"trending-{tenant}", daemon=True).start()
        return memo[2]

    # -- recommendations -------------------------------------------------------------------

    def recommend(self, q: Query) -> Answer:
        """The top k for a user (blocking: call it from a thread, or use `recommend_async`)."""
        started = time.perf_counter()
        with telemetry.span("recommend", tenant=q.tenant):
            plan = self._plan(q)
            with telemetry.span("cache.read"):
                state, raw, degraded = self._read_cached(q, plan.key)
            answer = self._answer(q, plan, state, raw, degraded)
        telemetry.request_served(answer.source, q.tenant, (time.perf_counter() - started) * 1e3)
        return answer

    async def recommend_async(self, q: Query) -> Answer:
        """`recommend` on the event loop: a cache hit with everything loaded does no blocking
        call (one async Redis round trip, the re-rank inline); anything that may block (first
        model read, a store read on a miss, cold start) runs in a worker thread."""
        started = time.perf_counter()
        with telemetry.span("recommend", tenant=q.tenant):
            plan = self._plan_nowait(q)
            if plan is None:
                plan = await anyio.to_thread.run_sync(self._plan, q)
            with telemetry.span("cache.read"):
                state, raw, degraded = await self._read_cached_async(q, plan.key)
            found = None if raw is None else self._decode_cached(plan.data, raw, plan.key)
            if found is not None:
                telemetry.cache_lookup(hit=True)
                head = None
                data = plan.data
                if plan.use_reranker and data.reranker is not None:
                    window = await self._window_pop_async(q.tenant, data)
                    features = _head_input(data, found, _recent(q, state), state, window)
                    with telemetry.span("rerank", candidates=features.codes.size):
                        head = await self._batcher.rerank(data, features)
                answer = self._rank(q, plan, state, found, "cache", degraded, None, head)
            else:
                answer = await anyio.to_thread.run_sync(
                    self._answer, q, plan, state, raw, degraded
                )
        telemetry.request_served(answer.source, q.tenant, (time.perf_counter() - started) * 1e3)
        return answer

    def _plan(self, q: Query) -> _Plan:
        plan = self._plan_for(q, self.models.for_model(self.model_for(q.tenant)), blocking=True)
        assert plan is not None
        return plan

    def _plan_nowait(self, q: Query) -> _Plan | None:
        """The plan when it needs no I/O and no wait for a model load, else None."""
        ready, model = self._active.get_nowait(q.tenant)
        if not ready:
            return None
        if model is None:
            raise NoActiveModel(f"no model has been published for tenant '{q.tenant}'")
        data = self.models.for_model_nowait(model)
        return None if data is None else self._plan_for(q, data, blocking=False)

    def _plan_for(self, q: Query, data: VersionData, blocking: bool) -> _Plan | None:
        assigned = self.experiments.assign(q.tenant, q.user_id)
        use_reranker, share = True, self.diversity
        experiment = variant = None
        if assigned is not None and (wanted := assigned[1].model_version) not in (
                None, data.version):
            if self._variant_version_unknown(q.tenant, wanted):
                assigned = None  # outside the experiment: never control labelled as the variant
            elif blocking:
                found = self._variant_data(q.tenant, wanted)
                if found is None:
                    assigned = None
                else:
                    data = found
            else:
                loaded = self.models.loaded(q.tenant, wanted)
                if loaded is None:
                    return None  # may need a store read or a load: the blocking path
                data = loaded
        if assigned is not None:
            exp, var = assigned
            experiment, variant = exp.name, var.name
            if var.rerank is not None:
                use_reranker = var.rerank
            if var.diversity is not None:
                share = var.diversity
        key = candidates_cache_key(q.tenant, data.version, q.user_id)
        return _Plan(data, key, use_reranker, share, experiment, variant)

    def _read_cached(self, q: Query, key: str) -> tuple[RankingState, bytes | None, bool]:
        """Online state and cached candidates; whether the read failed (the answer degrades).
        A key Redis refuses (wrong type) is a miss: the store's write-back replaces it."""
        try:
            state, raw = self._read_user(q.tenant, q.user_id, key)
        except BadReply as exc:
            log.warning("cache key of a user unreadable, reading the store: %s", exc)
            return NOTHING_KNOWN, None, False
        except Exception as exc:
            log.debug("cache unavailable, reading the store: %s", exc)
            return NOTHING_KNOWN, None, True
        return state, raw, False

    async def _read_cached_async(self, q: Query, key: str
                                 ) -> tuple[RankingState, bytes | None, bool]:
        online = self.online
        try:
            if online is None:
                cache = self._b.cache
                raw = await self.breakers.cache.call_async(lambda: cache.get_async(key),
                                                           self._retry)
                return NOTHING_KNOWN, raw, False
            state, raw = await self.breakers.cache.call_async(
                lambda: online.read_ranking_with_async(q.tenant, q.user_id, key), self._retry
            )
        except BadReply as exc:
            log.warning("cache key of a user unreadable, reading the store: %s", exc)
            return NOTHING_KNOWN, None, False
        except Exception as exc:
            log.debug("cache unavailable, reading the store: %s", exc)
            return NOTHING_KNOWN, None, True
        return state, raw, False

    @staticmethod
    def _decode_cached(data: VersionData, raw: bytes, key: str) -> Candidates | None:
        try:
            return data.candidates(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable cache value (version %s), reading the store: %s",
                        data.version, exc)  # no key: it holds the user id
            return None

    def _answer(self, q: Query, plan: _Plan, state: RankingState, raw: bytes | None,
                degraded: bool) -> Answer:
        """After the cache read: on a miss the store (written back), else cold start; then the
        ranking. May block (store, trending reads)."""
        data = plan.data
        found = None if raw is None else self._decode_cached(data, raw, plan.key)
        source = "cache"
        if not degraded:
            telemetry.cache_lookup(hit=found is not None)
        if found is None:
            source = "store"
            telemetry.fallback("cache", "store")
            with telemetry.span("store.read"):
                found, store_failed = self._from_store(
                    q.tenant, data, q.user_id, plan.key, write_back=not degraded
                )
            degraded = degraded or store_failed
        window = None
        if found is not None and plan.use_reranker and data.reranker is not None:
            window = self._window_pop(q.tenant, data)
        return self._rank(q, plan, state, found, source, degraded, window)

    def _rank(self, q: Query, plan: _Plan, state: RankingState,
              found: Candidates | None, source: str, degraded: bool,
              window: FloatArray | None, head: FloatArray | None = None) -> Answer:
        """Re-rank (unless `head` holds the re-ranked head already), filters, rules, diversity,
        top k; cold start when there are no candidates (which reads trending: blocking)."""
        data = plan.data
        rules = self.rules.for_tenant(q.tenant)
        excluded = (q.exclude | state.hidden | set(q.recent)
                    if state.hidden or q.recent else q.exclude)
        if found is not None:
            items, scores, codes = found
            personal: list[Source] = [(items, scores, codes)]
            if plan.use_reranker and data.reranker is not None:
                # The re-ranker orders the head of the list it was trained on; the tail only
                # tops up when filters leave fewer than k.
                w = data.reranker.width
                if head is None:
                    features = _head_input(data, found, _recent(q, state), state, window)
                    with telemetry.span("rerank", candidates=features.codes.size):
                        t0 = time.perf_counter()
                        head = rerank(data, features)
                        telemetry.reranked((time.perf_counter() - t0) * 1e3)
                personal = [(items, head, codes)] if len(items) <= w else [
                    (items[:w], head, codes[:w]), (items[w:], scores[w:], codes[w:])
                ]
            # No top-up from popular items: the stored list already leaves out what the user
            # interacted with in training, popular items outside it mostly are those.
            chosen = select(data, personal, q.k, excluded, q.categories, rules, plan.share)
        else:
            source = "cold_start"
            telemetry.fallback("store", "cold_start")
            sources: list[Source] = []
            content = self._content_based(data, _recent(q, state))
            if content is not None:
                sources.append(content)
            trending, failed = self._trending(q.tenant, q.categories)
            degraded = degraded or failed
            if trending:
                sources.append(([i for i, _ in trending],
                                np.array([s for _, s in trending], np.float32)))
            sources.append((data.popular_ids, data.popular_scores))
            chosen = select(data, sources, q.k, excluded, q.categories, rules, plan.share,
                            _new_in_categories(data, trending, q.categories))
        return Answer(
            q.tenant, q.user_id, data.version, "degraded" if degraded else source,
            chosen, new_id(), plan.experiment, plan.variant,
        )

    def _variant_version_unknown(self, tenant: str, version: str) -> bool:
        until = self._unknown_variant_versions.get((tenant, version))
        return until is not None and time.monotonic() < until

    def _variant_data(self, tenant: str, version: str) -> VersionData | None:
        """The version a variant serves; None while it loads, and when the tenant has no such
        version (then logged, and looked up again after a minute)."""
        loaded = self.models.loaded(tenant, version)
        if loaded is not None:
            return loaded
        model = self._active.version(tenant, version)
        if model is None:
            log.warning("experiment variant names version %s, which tenant %s does not have; "
                        "its users are outside the experiment", version, tenant)
            self._unknown_variant_versions[(tenant, version)] = time.monotonic() + 60.0
            return None
        data = self.models.for_model(model, active=False)
        return data if data.version == version and data.complete else None

    def _content_based(self, data: VersionData, context: Sequence[str]
                       ) -> tuple[list[str], FloatArray] | None:
        """Items like the ones in the context: artifact neighbours, else same-category popular.

        Scores sit above 1 so that content-based items rank before trending/popular ones.
        """
        if not context:
            return None
        codes = data.codes(list(context[:20]))
        codes = codes[codes < data.n_items]
        if codes.size == 0:
            return None
        if data.neighbours is not None and data.neighbour_scores is not None:
            nb = data.neighbours[codes].ravel()
            sc = data.neighbour_scores[codes].ravel()
            valid = nb >= 0
            if valid.any():
                uniq, inverse = np.unique(nb[valid], return_inverse=True)
                sums = np.bincount(inverse, weights=sc[valid]).astype(np.float32)
                scores = 1.0 + sums / max(float(sums.max()), 1e-9)
                return [data.item_ids[c] for c in uniq.tolist()], scores.astype(np.float32)
        cats = sorted({c for code in codes.tolist() for c in data.categories_of(code)})
        if not cats:
            return None
        rows = data.popular_in(cats, 100)
        if not rows:
            return None
        top = max(rows[0][1], 1e-9)
        return [i for i, _ in rows], np.array([1.0 + s / top for _, s in rows], np.float32)

    # -- non-personalised lists ------------------------------------------------------------

    def similar(self, tenant: str, item_id: str, k: int, exclude: frozenset[str] = frozenset(),
                categories: Sequence[str] = (), user_id: str | None = None) -> ItemList:
        data = self.data_for(tenant)
        state, degraded = (EMPTY_STATE, False) if user_id is None else self._user_state(
            tenant, user_id
        )
        code = data.index.get(item_id)
        sources: list[Source] = []
        neighbours: list[str] = []
        if code is not None and data.neighbours is not None and data.neighbour_scores is not None:
            row = data.neighbours[code]
            keep = row >= 0
            if keep.any():
                neighbours = [data.item_ids[c] for c in row[keep].tolist()]
                sources.append((neighbours, data.neighbour_scores[code][keep]))
        own = data.categories_of(code) if code is not None else []
        same = data.popular_in(own, 200) if own else []
        if same:
            sources.append(([i for i, _ in same], np.array([s for _, s in same], np.float32)))
        sources.append((data.popular_ids, data.popular_scores))
        excluded = exclude | state.excluded | {item_id}
        chosen = select(data, sources, k, excluded, categories, self.rules.for_tenant(tenant),
                        1.0)
        # "model" when neighbours lead the answer; none left after the filters: popular ones
        source = "model" if chosen and chosen[0].item_id in set(neighbours) else "cold_start"
        return ItemList(tenant, data.version, "degraded" if degraded else source, chosen)

    def popular(self, tenant: str, k: int, exclude: frozenset[str] = frozenset(),
                categories: Sequence[str] = ()) -> ItemList:
        data = self.data_for(tenant)
        chosen = select(data, [(data.popular_ids, data.popular_scores)], k, exclude, categories,
                        self.rules.for_tenant(tenant), 1.0)
        return ItemList(tenant, data.version, "popular", chosen)

    def trending(self, tenant: str, k: int, exclude: frozenset[str] = frozenset(),
                 categories: Sequence[str] = ()) -> ItemList:
        data = self.data_for(tenant)
        rows, failed = self._trending(tenant, categories)
        sources: list[Source] = []
        if rows:
            sources.append(([i for i, _ in rows], np.array([s for _, s in rows], np.float32)))
        sources.append((data.popular_ids, data.popular_scores))
        chosen = select(data, sources, k, exclude, categories, self.rules.for_tenant(tenant), 1.0,
                        _new_in_categories(data, rows, categories))
        trending_ids = {i for i, _ in rows}
        all_trending = bool(chosen) and all(s.item_id in trending_ids for s in chosen)
        source = "degraded" if failed else ("trending" if all_trending else "popular")
        return ItemList(tenant, data.version, source, chosen)

    # -- privacy ---------------------------------------------------------------------------

    def forget_user(self, tenant: str, user_id: str) -> dict[str, int]:
        """Deletes the user's candidate documents (every version), events, dead letters whose
        body named them, cache keys and online state, and records the deletion so that no fill
        or training run brings them back; raises BackendError naming what was already removed
        if a backend fails (DeletionIncomplete).
        """
        removed = {"recommendations": 0, "events": 0, "deadLetters": 0, "cacheKeys": 0,
                   "onlineState": 0}
        pk = user_partition(tenant, user_id)
        store, cache = self.breakers.store, self.breakers.cache
        def query(container: str) -> list[dict[str, Any]]:
            return store.call(lambda: self._b.store.query_partition(container, pk), self._retry)

        def query_models(tenant: str) -> list[dict[str, Any]]:
            return store.call(lambda: self._b.store.query_partition(MODELS, tenant), self._retry)

        def delete(container: str, doc_id: str, partition: str = pk) -> bool:
            return store.call(lambda: self._b.store.delete(container, doc_id, partition))

        def delete_all(container: str, ids: list[tuple[str, str]], what: str) -> None:
            if self._b.store.name == "sqlite":  # one transaction, not one per document
                removed[what] += int(store.call(lambda: self._b.store.delete_many(container, ids)))
                return
            for doc_id, partition in ids:  # counted one by one: a failure says how far it got
                if delete(container, doc_id, partition):
                    removed[what] += 1

        try:
            # First, so that even a partial deletion is never undone by a later fill or
            # training run (shared/forgotten.py)
            store.call(lambda: forgotten.record(self._b.store, tenant, user_id))
            online = self.online
            if online is not None:  # before any deletion: in-flight writes check it
                at = time.time()
                cache.call(lambda: online.mark_forgotten(tenant, user_id, at))
            versions: set[str] = set()
            for container in (RECOMMENDATIONS, EVENTS):
                docs = query(container)
                if container == RECOMMENDATIONS:
                    versions |= {str(doc["id"]).split("|", 1)[0] for doc in docs}
                delete_all(container, [(str(doc["id"]), pk) for doc in docs], container)
            # Dead letters are partitioned by a digest of their body (not by user): those whose
            # body named the user carry its tenant and userId: a cross-partition scan finds them.
            owner = {"tenant": tenant, "userId": user_id}
            dead = store.call(lambda: list(self._b.store.scan(DEADLETTERS, owner)))
            delete_all(DEADLETTERS, [(str(doc["id"]), str(doc["pk"])) for doc in dead],
                       "deadLetters")
            # Every version the tenant has published: after a failed first attempt (which
            # deleted the documents above) this process may never have served the tenant.
            versions |= {str(d["id"]) for d in query_models(tenant)
                         if d.get("kind") == "version"}
            versions |= self._known_versions(tenant)
            keys = [candidates_cache_key(tenant, v, user_id) for v in sorted(versions)]
            removed["cacheKeys"] = int(cache.call(lambda: self._b.cache.delete(keys)))
            if online is not None:
                removed["onlineState"] = int(
                    cache.call(lambda: online.forget_user(tenant, user_id))
                )
        except Exception as exc:
            done = ", ".join(f"{n} {what}" for what, n in removed.items())
            raise DeletionIncomplete(f"{exc}; removed so far: {done}; retry the request",
                                     done) from None
        return removed

    def _known_versions(self, tenant: str) -> set[str]:
        versions = set()
        model = self._active.known(tenant)
        if model is not None:
            versions.add(model.version)
            previous = model.manifest.get("previous")
            if isinstance(previous, str):
                versions.add(previous)
        current = self.models.current(tenant)
        if current is not None:
            versions.add(current.version)
        return versions

    # -- readiness -------------------------------------------------------------------------

    def readiness(self, tenant: str) -> tuple[bool, dict[str, Any], bool]:
        """Backends reachable and the tenant's active model loaded; reasons when not; and
        whether the tenant is known to have no model (its pointer was read: none)."""
        reasons: list[str] = []
        backends = {
            "cache": self._b.cache.ping(),
            "store": self._b.store.ping(),
            "artifacts": self._b.artifacts.ping(),
        }
        if self.online is not None:
            backends["onlineState"] = self.online.ping()
        reasons += [f"{name} is not reachable" for name, ok in backends.items() if not ok]
        model: dict[str, Any] = {}
        active = self._active.known(tenant)
        unreadable = False
        if active is None:
            try:
                active = self._active.get(tenant)
            except Exception as exc:  # the detail may name hosts: logged, not answered
                log.warning("readiness: the active model of tenant %s cannot be read: %s",
                            tenant, exc)
                reasons.append(f"the active model of tenant '{tenant}' cannot be read (the "
                               "store is unavailable)")
                unreadable = True
        if active is None:
            if not unreadable:  # unreadable: whether it has one is unknown
                reasons.append(f"tenant '{tenant}' has no active model")
        else:
            loaded = self.models.loaded(tenant, active.version)
            if loaded is None:
                self.models.for_model(active)  # starts the load if nothing else did
                reasons.append(f"active version {active.version} is not loaded yet")
            model = {
                "activeVersion": active.version,
                "ageSeconds": round(active.age_seconds, 1),
                "loaded": loaded is not None,
                "reranker": bool(loaded and loaded.reranker is not None),
            }
            current = self.models.current(tenant)
            if current is not None:
                model["servingVersion"] = current.version
        return not reasons, {
            "tenant": tenant,
            "backends": backends,
            "breakers": self.breakers.states(),
            "model": model,
            "reasons": reasons,
        }, active is None and not unreadable
