"""Cache/store repopulation benchmark: the project's fill code next to raw Redis in one run.

    python -m bench.fill.run [--users 1000000] [--candidates 100] [--repeats 3]
                             [--cosmos-docs 2000] [--throttle 0.2]

Redis: a private redis-server on a free port. Each repeat writes every user's candidate list
through training.publish (chunked numpy/orjson encoding, pipelined RESP writes), then
`redis-benchmark -t set -P 64 -d <median payload bytes>` writes as many keys of the same size;
medians of both and their ratio are printed (target: fill >= 0.3x raw).
Cosmos DB: the store writer (bounded concurrency, retries honouring x-ms-retry-after-ms) into
the Cosmos-protocol server, once clean and once behind a proxy that answers 429 for a fraction
of calls; prints docs/s and retry counts.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import threading
import time
import uuid
from typing import Any

import numpy as np
import redis

from shared.settings import Settings
from shared.stores.cache import RedisCache
from shared.stores.factory import build_store
from tests import services
from training.model import TrainedModel
from training.publish import CandidateEncoder, FillOptions, StoreWriter, fill_cache_only

TTL = 7 * 24 * 3600


def make_model(users: int, items: int, candidates: int, seed: int = 0) -> TrainedModel:
    rng = np.random.default_rng(seed)
    top = rng.integers(0, items, size=(users, candidates), dtype=np.int32)
    scores = np.sort(rng.random((users, candidates), dtype=np.float32), axis=1)[:, ::-1]
    return TrainedModel(
        generator="bench", parameters={},
        user_ids=np.char.add("user", np.arange(users).astype(str)),
        item_ids=np.char.add("item", np.arange(items).astype(str)),
        top_items=top, top_scores=np.ascontiguousarray(scores),
        popularity=np.ones(items, np.float32),
    )


def raw_rate(port: int, n: int, size: int) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set", "-P", "64",
         "-d", str(size), "-n", str(n), "-r", str(n), "-q", "--csv"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    match = re.search(r'"SET","([\d.]+)"', out)
    if match is None:
        raise RuntimeError(f"cannot parse redis-benchmark output: {out!r}")
    return float(match.group(1))


def bench_redis(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    model = make_model(args.users, args.items, args.candidates)
    print(f"model: {args.users:,} users x {args.candidates} candidates, {args.items:,} items "
          f"(generated in {time.perf_counter() - t0:.1f} s)")
    sample = CandidateEncoder(model).encode(0, min(args.users, 2000))
    size = int(statistics.median(len(p) for p in sample))
    t0 = time.perf_counter()
    encoder = CandidateEncoder(model)
    for lo in range(0, min(args.users, 200_000), 1000):
        encoder.encode(lo, min(args.users, lo + 1000))
    encode_rate = min(args.users, 200_000) / (time.perf_counter() - t0)
    print(f"payload: median {size} bytes; encoding alone: {encode_rate:,.0f} users/s")
    fills: list[float] = []
    raws: list[float] = []
    with services.redis_server() as port:
        client = redis.Redis(port=port)
        cache = RedisCache(client)
        for r in range(args.repeats):
            client.flushall()
            t0 = time.perf_counter()
            n = fill_cache_only(cache, model, "bench", "v1", TTL)
            fills.append(n / (time.perf_counter() - t0))
            assert client.dbsize() == args.users
            client.flushall()
            raws.append(raw_rate(port, args.users, size))
            print(f"  repeat {r + 1}: fill {fills[-1]:,.0f} users/s, "
                  f"redis-benchmark {raws[-1]:,.0f} SET/s")
        client.flushall()
    fill_med, raw_med = statistics.median(fills), statistics.median(raws)
    print(f"redis fill (median of {args.repeats}): {fill_med:,.0f} users/s "
          f"= {fill_med * size / 2**20:,.0f} MiB/s; redis-benchmark -P 64 -d {size}: "
          f"{raw_med:,.0f} SET/s; ratio {fill_med / raw_med:.2f}x (target >= 0.30x)")


class Throttle:
    """The container client, answering 429 with x-ms-retry-after-ms for a share of calls."""

    def __init__(self, real: Any, fraction: float, retry_after_ms: int, seed: int = 1) -> None:
        self.real, self.fraction, self.retry_after_ms = real, fraction, retry_after_ms
        self.rng = np.random.default_rng(seed)
        self.throttled = 0
        self.lock = threading.Lock()

    def upsert_item(self, body: dict[str, Any], **kwargs: Any) -> Any:
        from azure.cosmos.exceptions import CosmosHttpResponseError

        with self.lock:
            hit = self.rng.random() < self.fraction
            self.throttled += hit
        if hit:
            error = CosmosHttpResponseError(status_code=429, message="Request rate is large")
            error.headers = {"x-ms-retry-after-ms": str(self.retry_after_ms)}
            raise error
        return self.real.upsert_item(body, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def bench_cosmos(args: argparse.Namespace) -> None:
    model = make_model(args.cosmos_docs, 5000, args.candidates, seed=1)
    payloads = CandidateEncoder(model).encode(0, args.cosmos_docs)
    import orjson

    with services.cosmos_server() as endpoint:
        store = build_store(Settings(
            COSMOS_ENDPOINT=endpoint, COSMOS_KEY=services.COSMOS_KEY,
            COSMOS_DATABASE=f"bench{uuid.uuid4().hex[:8]}", COSMOS_CREATE_CONTAINERS=True,
            COSMOS_VERIFY_TLS=False,
        ))
        containers = store._containers  # type: ignore[attr-defined]
        real = containers["recommendations"]
        results: list[float] = []
        for label, fraction in (("clean", 0.0), (f"{args.throttle:.0%} throttled", args.throttle)):
            proxy = Throttle(real, fraction, retry_after_ms=10)
            containers["recommendations"] = proxy
            version = f"v{len(results)}"
            docs = [{"id": f"{version}|{u}", "pk": f"bench|{u}", "version": version,
                     **orjson.loads(p)} for u, p in zip(model.user_ids.tolist(), payloads,
                                                        strict=True)]
            options = FillOptions(store_concurrency=args.concurrency)
            t0 = time.perf_counter()
            with StoreWriter(store, options) as writer:
                for lo in range(0, len(docs), 500):
                    writer.upsert_all("recommendations", docs[lo : lo + 500])
            rate = len(docs) / (time.perf_counter() - t0)
            results.append(rate)
            print(f"cosmos upserts, {label}: {rate:,.0f} docs/s with {args.concurrency} writers; "
                  f"{proxy.throttled} answered 429, {writer.retries} retried, all written")
        print(f"cosmos throttled/clean rate ratio: {results[1] / results[0]:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cosmos-docs", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--throttle", type=float, default=0.2)
    args = p.parse_args()
    bench_redis(args)
    if args.cosmos_docs:
        bench_cosmos(args)


if __name__ == "__main__":
    main()
