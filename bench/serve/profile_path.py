"""In-process cost of one request, the full path against the bare endpoint, stage by stage.

    python -m bench.serve.profile_path [--users 2000] [--requests 1000] [--profile]
                                       [--tree-sizes 40,80,150] [--concurrency 1]
                                       [--reranker-shape line+15x8@0.2]
                                       [--onnx-rows 100,256,1000]

Builds the data `bench.serve.run` builds (a private redis-server; the SQLite store instead of
Cosmos, local artifacts) and calls the ASGI app directly: no sockets, no HTTP parsing, which
are the same for both endpoints. Every request is for a random user, as under wrk: one user's
data repeated would stay in the CPU caches, and the per-item lookups (id -> code, feature
rows, categories) are mostly cache misses in a real run.

Printed, in CPU µs per request (`time.process_time`, which does not count waiting for Redis
or for other processes; lowest and median of 15 batches, the lowest being the steadiest
figure on a shared machine):
1. the full path and the bare endpoint, batches alternated;
2. the stages of the full path timed inside those requests (wrappers around the functions
   the request calls; wall-clock `perf_counter` for the CPU-only stages, whose wrappers cost
   ~0.1 µs, process time for the Redis reads, whose wrappers cost ~1.5 µs);
3. with `--tree-sizes`, the ONNX call on these users' rows for re-rankers of other sizes
   (the default shape with another number of trees);
4. with `--onnx-rows`, the version's re-ranker on the same rows sliced into calls of so many
   rows;
5. with `--profile`, cProfiles of both paths (as many requests each) and, function by
   function, what the full path spends beyond the bare endpoint (the largest differences
   first; cProfile's own cost per call inflates every figure, so read them as shares). This
   is how the per-span environment lookups of OpenTelemetry and `select`'s per-candidate
   loop were found.

`--concurrency N` keeps N requests in flight (re-ranks then batch as under load; the async
stages' figures then include the other requests' work).

`--batches` instead answers "<path prefix> <n>" lines on stdin with the CPU µs per request of
n requests: a driver can alternate two checkouts' processes for an A/B comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests import services
from training.reranker import DEFAULT_SHAPE, shape_arg

REPEATS = 15
FULL, BARE = "/api/recommendations/u", "/bench/bare/u"


def _scope(path: str, query: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": query, "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


async def _call(app: Any, path: str, query: bytes = b"k=10") -> bytes:
    """One request through the ASGI app; returns the body (asserts a 200)."""
    body: list[bytes] = []
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(_scope(path, query), receive, send)
    assert status == [200], (path, status, body)
    return b"".join(body)


class _Requests:
    """Batches of requests for random users; CPU µs per request of each batch."""

    def __init__(self, app: Any, users: int, concurrency: int = 1) -> None:
        self.app = app
        self.users = users
        self.concurrency = concurrency
        self.rng = random.Random(1)

    async def batch(self, prefix: str, n: int) -> float:
        t0 = time.process_time()
        for lo in range(0, n, self.concurrency):
            await asyncio.gather(*(_call(self.app, f"{prefix}{self.rng.randrange(self.users)}")
                                   for _ in range(min(self.concurrency, n - lo))))
        return (time.process_time() - t0) / n * 1e6


class _StageClock:
    """Wraps functions the request path calls (module globals, class attributes) with timers
    that add up their time per label while installed."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str, cpu: bool = False) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        static = isinstance(original, staticmethod)
        fn = original.__func__ if static else original
        clock = time.process_time if cpu else time.perf_counter
        total = self.total

        if asyncio.iscoroutinefunction(fn):
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = clock()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    total[label] += clock() - t0
            timed: Any = timed_async
        else:
            def timed_sync(*args: Any, **kwargs: Any) -> Any:
                t0 = clock()
                try:
                    return fn(*args, **kwargs)
                finally:
                    total[label] += clock() - t0
            timed = timed_sync
        setattr(owner, name, staticmethod(timed) if static else timed)
        self._undo.append((owner, name, original))

    @contextmanager
    def installed(self) -> Any:
        try:
            yield self
        finally:
            for owner, name, original in reversed(self._undo):
                setattr(owner, name, original)
            self._undo.clear()


def _stage_clock() -> _StageClock:
    """Timers around each stage of the full path (and the bare endpoint's one read)."""
    from shared.serving import api, recommender, rerank_batch
    from shared.serving.model_data import Reranker, VersionData
    from shared.serving.recommender import Answer, Recommender
    from shared.serving.rerank_batch import RerankBatcher
    from shared.stores.cache import RedisCache

    clock = _StageClock()
    clock.wrap(Recommender, "recommend_async", "recommend_async (all below but parsing)", cpu=True)
    clock.wrap(api, "_recommendation_query", "parse parameters")
    clock.wrap(Recommender, "_plan_nowait", "plan (version, variant, key)")
    clock.wrap(Recommender, "_read_cached_async",
               "Redis: online state + candidates, 1 round trip", cpu=True)
    clock.wrap(RedisCache, "get_async", "Redis: bare GET (bare endpoint only)", cpu=True)
    clock.wrap(Recommender, "_decode_cached", "decode candidates (codes, or JSON)")
    clock.wrap(Recommender, "_window_pop_async", "trending window (memo)")
    clock.wrap(Recommender, "_rank", "_rank: all of the ranking below")
    clock.wrap(VersionData, "codes", "item ids -> codes (JSON values only)")
    clock.wrap(RerankBatcher, "_score", "re-rank batch (features + ONNX), per request")
    clock.wrap(rerank_batch, "features_many", "    features (features_many)")
    clock.wrap(Reranker, "score", "    ONNX (Reranker.score)")
    clock.wrap(recommender, "select", "  select (filters, diversity, top k)")
    clock.wrap(Answer, "to_json", "Answer.to_json")
    return clock


async def measure(users: int, n: int, profile: bool, tree_sizes: list[int],
                  concurrency: int = 1, onnx_rows: list[int] | None = None) -> None:
    from bench.serve.app import app
    from shared.runtime import get_runtime

    rt = get_runtime()
    rt.recommender.warm(rt.settings.default_tenant)
    requests = _Requests(app, users, concurrency)
    for _ in range(100):  # warm-up: connections, the plan, the window memo
        await requests.batch(FULL, 1)
        await requests.batch(BARE, 1)

    full: list[float] = []
    bare: list[float] = []
    for _ in range(REPEATS):  # alternating batches, so both see the same neighbours
        full.append(await requests.batch(FULL, n))
        bare.append(await requests.batch(BARE, n))
    print(f"\nCPU µs per request (lowest / median of {REPEATS} batches of {n}, random users)")
    print(f"  {'full path':<52} {min(full):8.1f} {statistics.median(full):8.1f}")
    print(f"  {'bare endpoint':<52} {min(bare):8.1f} {statistics.median(bare):8.1f}")
    extra = [f - b for f, b in zip(full, bare, strict=True)]
    print(f"  {'extra cost of the full path':<52} {min(extra):8.1f} "
          f"{statistics.median(extra):8.1f}")

    stages: dict[str, list[float]] = defaultdict(list)
    with _stage_clock().installed() as clock:
        for _ in range(REPEATS):
            for prefix in (FULL, BARE):
                clock.total.clear()
                await requests.batch(prefix, n)
                for label, seconds in clock.total.items():
                    stages[label].append(seconds / n * 1e6)
    print(f"\nStages inside those requests (µs per request, lowest / median of {REPEATS})")
    for label, values in stages.items():
        print(f"  {label:<52} {min(values):8.1f} {statistics.median(values):8.1f}")

    if tree_sizes:
        await _tree_sizes(tree_sizes, users, n)
    if onnx_rows:
        await _onnx_rows(onnx_rows, users, n)

    if profile:
        await _profile_difference(requests, n)


async def _profile_difference(requests: _Requests, n: int, rows: int = 40) -> None:
    """Own time per request of each function, full path minus bare endpoint (cProfile)."""
    own: dict[str, dict[str, float]] = {}
    for prefix in (FULL, BARE):
        prof = cProfile.Profile()
        prof.enable()
        await requests.batch(prefix, n)
        prof.disable()
        stats: dict[Any, tuple[Any, ...]] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        own[prefix] = {f"{os.path.basename(f)}:{line}({name})": v[2] / n * 1e6
                       for (f, line, name), v in stats.items()}
    total_full, total_bare = sum(own[FULL].values()), sum(own[BARE].values())
    print(f"\ncProfile, own µs per request (inflated by the profiler): full path "
          f"{total_full:.0f}, bare endpoint {total_bare:.0f}; the largest differences:")
    names = own[FULL].keys() | own[BARE].keys()
    diff = sorted(names, key=lambda k: own[BARE].get(k, 0.0) - own[FULL].get(k, 0.0))
    for name in diff[:rows]:
        f, b = own[FULL].get(name, 0.0), own[BARE].get(name, 0.0)
        print(f"  {f - b:+8.1f}  (full {f:7.1f}, bare {b:7.1f})  {name}")


async def _user_rows(users: int, n: int) -> list[Any]:
    """The re-ranker's feature rows of n random users (one array of ~100 rows each)."""
    import numpy as np

    from shared.runtime import get_runtime
    from shared.serving.ranking import features_one
    from shared.serving.recommender import Query

    rt = get_runtime()
    rec = rt.recommender
    rng = random.Random(2)
    rows = []
    for _ in range(n):
        q = Query(rt.settings.default_tenant, f"u{rng.randrange(users)}")
        plan = rec._plan_nowait(q)
        assert plan is not None
        _, raw, _ = await rec._read_cached_async(q, plan.key)
        found = rec._decode_cached(plan.data, raw or b"", plan.key)
        assert found is not None
        rows.append(features_one(plan.data, found.codes, found.scores, None,
                                 np.zeros(0, np.int64), 0.0, time.time()))
    return rows


async def _onnx_rows(per_call: list[int], users: int, n: int) -> None:
    """The version's re-ranker on the same rows, sliced into calls of so many rows."""
    import numpy as np

    from shared.runtime import get_runtime

    rt = get_runtime()
    data = rt.recommender.models.current(rt.settings.default_tenant)
    assert data is not None and data.reranker is not None
    rows = np.concatenate(await _user_rows(users, n))
    print(f"\nONNX by rows per call, {len(rows):,} rows of {n} random users "
          f"(CPU µs per 100 rows, lowest / median of {REPEATS})")
    for size in per_call:
        per: list[float] = []
        for _ in range(REPEATS):
            t0 = time.process_time()
            for lo in range(0, len(rows), size):
                data.reranker.score(rows[lo : lo + size])
            per.append((time.process_time() - t0) / len(rows) * 100 * 1e6)
        print(f"  {size:>6} rows per call{'':<34} {min(per):8.1f} {statistics.median(per):8.1f}")


async def _tree_sizes(sizes: list[int], users: int, n: int) -> None:
    """ONNX time on n random users' feature rows for re-rankers of other sizes."""
    import numpy as np

    from shared.reranking.features import FEATURES
    from shared.serving.model_data import Reranker
    from training.reranker import new_model, to_onnx

    rows = await _user_rows(users, n)
    gen = np.random.default_rng(3)  # the benchmark's synthetic training rows
    x = gen.random((20_000, len(FEATURES))).astype(np.float32)
    logit = 3 * x[:, 0] + 2 * x[:, FEATURES.index("pop_pct")] - 2.5
    y = gen.random(len(x)) < 1 / (1 + np.exp(-logit))
    print(f"\nONNX call on {n} random users' rows by re-ranker size "
          f"(CPU µs, lowest / median of {REPEATS})")
    for trees in sizes:
        shape = DEFAULT_SHAPE._replace(trees=trees)
        model = new_model(shape=shape).fit(x, y.astype(np.float32))
        reranker = Reranker(to_onnx(model), FEATURES, rows[0].shape[0])
        per: list[float] = []
        for _ in range(REPEATS):
            t0 = time.process_time()
            for r in rows:
                reranker.score(r)
            per.append((time.process_time() - t0) / len(rows) * 1e6)
        label = f"{shape}"
        print(f"  {label:<52} {min(per):8.1f} {statistics.median(per):8.1f}")


async def serve_batches(users: int, concurrency: int) -> None:
    """The A/B mode: batches on request from stdin, CPU µs per request on stdout."""
    from bench.serve.app import app
    from shared.runtime import get_runtime

    rt = get_runtime()
    rt.recommender.warm(rt.settings.default_tenant)
    requests = _Requests(app, users, concurrency)
    for _ in range(100):
        await requests.batch(FULL, 1)
        await requests.batch(BARE, 1)
    print("ready", flush=True)
    for line in sys.stdin:
        prefix, count = line.split()
        print(await requests.batch(prefix, int(count)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=1000, help="requests per batch")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile both paths and print the largest differences")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="requests in flight at once (re-ranks batch as under load; the "
                         "async stages' figures then include the others' work)")
    ap.add_argument("--onnx-rows", default="",
                    help="comma-separated rows per ONNX call: the version's re-ranker on the "
                         "same rows sliced so (does the cost per row depend on the call size?)")
    ap.add_argument("--tree-sizes", default="",
                    help="comma-separated max_iter values: ONNX time for re-rankers of that size")
    ap.add_argument("--reranker-shape", type=shape_arg, default=DEFAULT_SHAPE,
                    metavar="[line+]TREESxLEAVES@RATE",
                    help="the served re-ranker's size (default: training's, %(default)s)")
    ap.add_argument("--batches", action="store_true",
                    help="answer '<path prefix> <n>' lines on stdin (A/B drivers)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp, \
            services.redis_server() as port:
        os.environ.update({
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port), "REDIS_MAX_CONNECTIONS": "64",
            "RECO_DATA_DIR": tmp, "RECO_ARTIFACTS_DIR": str(Path(tmp) / "artifacts"),
        })
        from bench.serve import run
        from shared.settings import get_settings

        out = sys.stderr if args.batches else sys.stdout
        real_stdout, sys.stdout = sys.stdout, out  # the A/B driver reads only its answers
        try:
            run.load(get_settings(), args.users, args.reranker_shape)
        finally:
            sys.stdout = real_stdout
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        if args.batches:
            runner(serve_batches(args.users, args.concurrency))
        else:
            sizes = [int(v) for v in args.tree_sizes.split(",") if v]
            runner(measure(args.users, args.requests, args.profile, sizes, args.concurrency,
                           [int(v) for v in args.onnx_rows.split(",") if v]))


if __name__ == "__main__":
    main()
