"""Serving benchmark: the full request path against a bare one-GET endpoint, then the same
server with Redis stopped (and restarted) and with the Cosmos-protocol server stopped.

    python -m bench.serve.run [--users 100000] [--seconds 10] [--rounds 3] [--connections 200]

Starts a private redis-server and @vercel/cosmosdb-server, bulk-loads users x 100 candidates
into Redis (a subset into Cosmos), publishes a version with an ONNX re-ranker, runs the API
under uvicorn in its own process and drives it with `wrk` from another.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from shared.keys import (
    candidates_cache_key,
    candidates_doc_id,
    encode_candidate_codes,
    item_list_digest,
    user_partition,
)
from shared.model_registry import ModelVersion, save_version, set_active
from shared.reranking.features import FEATURES
from shared.serving.model_data import ITEM_STATS_FILE
from shared.serving.recommender import RECOMMENDATIONS
from shared.settings import Settings
from shared.stores.factory import build_backends
from tests import services
from training.reranker import DEFAULT_SHAPE, Shape, shape_arg

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
TENANT = "default"
N_ITEMS = 20_000
N_CATEGORIES = 30
CANDIDATES = 100
STORE_USERS = 2_000  # users whose candidates are also in Cosmos (the store/degraded modes)


# -- services ------------------------------------------------------------------------------

@contextmanager
def redis_process(port: int, workdir: Path):
    """A redis-server that can be stopped and restarted with its data (`snapshot`, RDB file)."""
    cmd = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
           "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir),
           "--dbfilename", "bench.rdb"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        services.wait_for_port(port, proc, "redis-server")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def snapshot(port: int, timeout: float = 120) -> None:
    """Writes the RDB file the restarted Redis loads. BGSAVE, not SAVE: a blocking SAVE of
    ~100 MB stalls Redis for about a second while the last requests of the previous run are
    still in flight, their reads time out, and the cache breaker is still recovering when the
    next run starts (it showed as degraded answers with Redis up)."""
    client = redis.Redis(port=port)
    try:
        before = client.lastsave()
        client.bgsave()
        deadline = time.monotonic() + timeout
        while client.info("persistence")["rdb_bgsave_in_progress"] or client.lastsave() == before:
            if time.monotonic() > deadline:
                raise RuntimeError("redis BGSAVE did not finish in time")
            time.sleep(0.1)
        if client.info("persistence")["rdb_last_bgsave_status"] != "ok":
            raise RuntimeError("redis BGSAVE failed")
    finally:
        client.close()


@contextmanager
def api_server(port: int, env: dict[str, str], workers: int):
    cmd = [sys.executable, "-m", "uvicorn", "bench.serve.app:app", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "warning",
           "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=sys.stderr,
                            start_new_session=True)
    try:
        services.wait_for_port(port, proc, "uvicorn", timeout=60)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def wait_ready(base: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/ready", timeout=5) as r:
                return dict(json.loads(r.read()))
        except Exception as exc:  # 503 while the model loads
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"the API did not become ready: {last}")


# -- data ------------------------------------------------------------------------------------

def train_reranker(shape: Shape = DEFAULT_SHAPE) -> bytes:
    """The default re-ranker's shape fitted on synthetic feature rows, exported to ONNX the way
    training does it."""
    from training.reranker import new_model, to_onnx

    rng = np.random.default_rng(3)
    x = rng.random((20_000, len(FEATURES))).astype(np.float32)
    logit = 3 * x[:, 0] + 2 * x[:, FEATURES.index("pop_pct")] - 2.5
    y = rng.random(len(x)) < 1 / (1 + np.exp(-logit))
    return to_onnx(new_model(shape=shape).fit(x, y.astype(np.float32)))


def load(settings: Settings, n_users: int, shape: Shape = DEFAULT_SHAPE) -> str:
    """Writes a version like publish does: artifact, store docs (a subset), Redis, then switch."""
    backends = build_backends(settings)
    rng = np.random.default_rng(0)
    version = datetime.now(UTC).strftime("v%Y%m%d%H%M%S%f")
    created = datetime.now(UTC).isoformat()
    item_ids = np.array([f"i{n}" for n in range(N_ITEMS)])
    popularity = np.sort(rng.zipf(1.3, N_ITEMS).astype(np.float32))[::-1].copy()
    prefix = f"{TENANT}/{version}"
    stats = io.BytesIO()
    now = time.time()
    np.savez_compressed(stats, item_ids=item_ids, popularity=popularity,
                        first_seen=np.full(N_ITEMS, now - 90 * 86400),
                        last_seen=now - rng.random(N_ITEMS) * 30 * 86400,
                        mean_weight=np.ones(N_ITEMS, np.float32))
    cats = rng.integers(0, N_CATEGORIES, (N_ITEMS, 2))
    items_meta = {str(i): {"title": f"Item {i}",
                           "categories": sorted({f"c{a}", f"c{b}"})}
                  for i, (a, b) in zip(item_ids, cats, strict=True)}
    popular = [(str(item_ids[i]), float(popularity[i])) for i in range(100)]
    manifest = {"version": version, "tenant": TENANT, "created": created,
                "generator": "synthetic", "features": FEATURES,
                # the target: the ONNX re-ranker orders all 100 candidates
                "reranker_candidates": CANDIDATES,
                "candidate_codes": {"items": N_ITEMS,
                                    "digest": item_list_digest(item_ids.tolist())}}
    t0 = time.perf_counter()
    files = {ITEM_STATS_FILE: stats.getvalue(), "items.json": json.dumps(items_meta).encode(),
             "popular.json": json.dumps(popular).encode(), "reranker.onnx": train_reranker(shape)}
    for name, data in files.items():
        backends.artifacts.put(f"{prefix}/{name}", data)
    backends.artifacts.put(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    print(f"artifact written ({time.perf_counter() - t0:.1f} s, re-ranker trained)")

    t0 = time.perf_counter()
    client: redis.Redis = backends.cache.client  # type: ignore[attr-defined]
    scores = np.round(np.sort(rng.random((1, CANDIDATES)))[:, ::-1], 4)[0].tolist()
    chunk = 5_000
    for start in range(0, n_users, chunk):
        codes = rng.integers(0, N_ITEMS, (min(chunk, n_users - start), CANDIDATES))
        pipe = client.pipeline(transaction=False)
        for row, user in enumerate(range(start, start + codes.shape[0])):
            items = [f"i{c}" for c in codes[row]]
            pipe.set(candidates_cache_key(TENANT, version, f"u{user}"),
                     encode_candidate_codes(codes[row], scores))
            if user < STORE_USERS:
                backends.store.upsert(RECOMMENDATIONS, {
                    "id": candidates_doc_id(version, f"u{user}"),
                    "pk": user_partition(TENANT, f"u{user}"),
                    "version": version, "items": items, "scores": scores})
        pipe.execute()
    used = client.info("memory")["used_memory_human"]
    print(f"{n_users:,} users x {CANDIDATES} candidates in Redis ({used}), {STORE_USERS:,} "
          f"in Cosmos ({time.perf_counter() - t0:.1f} s)")
    save_version(backends.store, ModelVersion(TENANT, version, created,
                                              popular, manifest))
    set_active(backends.store, TENANT, version)
    return version


# -- load ------------------------------------------------------------------------------------

WRK_RE = {
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
    "socket": re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"),
    "degraded": re.compile(r"Degraded answers: (\d+)"),
    "requests": re.compile(r"(\d+) requests in"),
}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(base: str, path_prefix: str, users: int, seconds: float, connections: int,
        suffix: str = "?k=10") -> dict[str, float]:
    env = {**os.environ, "BENCH_USERS": str(users), "BENCH_PREFIX": path_prefix,
           "BENCH_SUFFIX": suffix}
    out = subprocess.run(
        ["wrk", "-t1" if connections < 2 else "-t2", f"-c{connections}", f"-d{int(seconds)}s",
         "--latency", "--timeout", "5s", "-s", str(HERE / "users.lua"), base],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    result = {"rps": float(WRK_RE["rps"].search(out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        result[f"p{pct}"] = _ms(m.group(1)) if m else float("nan")
    non2xx = WRK_RE["non2xx"].search(out)
    sock = WRK_RE["socket"].search(out)
    degraded = WRK_RE["degraded"].search(out)
    requests = WRK_RE["requests"].search(out)
    result["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    result["socket"] = float(sum(int(g) for g in sock.groups())) if sock else 0.0
    result["errors"] = result["non2xx"] + result["socket"]
    result["degraded"] = float(degraded.group(1)) if degraded else float("nan")
    result["requests"] = float(requests.group(1)) if requests else float("nan")
    return result


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def show(name: str, r: dict[str, float]) -> None:
    print(f"  {name:<28} {r['rps']:>7,.0f} req/s  p50 {r['p50']:>6.2f} ms  "
          f"p90 {r['p90']:>6.2f} ms  p99 {r['p99']:>7.2f} ms  non-2xx {int(r['non2xx'])}  "
          f"socket errors {int(r['socket'])}  degraded {int(r['degraded'])}"
          f"/{int(r['requests'])}")


def drive(base: str, users: int, seconds: float, concurrency: int, out: Path
          ) -> subprocess.Popen[str]:
    """Starts the driver and returns once its clock runs, so phases line up with its seconds
    (timing from Popen put the driver's start ~0.5 s late and Redis-down answers in 'before')."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.serve.drive", base, str(users), str(seconds),
         str(concurrency), str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "started":
        raise RuntimeError(f"the driver did not start: {line!r}")
    return proc


def summarise(timeline: dict[str, dict[str, int]], phases: list[tuple[str, float, float]]
              ) -> None:
    for name, lo, hi in phases:
        c: Counter[str] = Counter()
        for second, labels in timeline.items():
            if lo <= int(second) < hi:
                c.update(labels)
        total = sum(c.values()) or 1
        fivexx = sum(n for k, n in c.items() if k.startswith("5") or k.startswith("error"))
        parts = ", ".join(f"{k} {n * 100 / total:.0f}%" for k, n in c.most_common())
        print(f"  {name:<34} {total:>6} answers, 5xx/errors {fivexx}: {parts}")


# -- main ------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2,
                    help="uvicorn workers, the same for both endpoints (2 cores: 2 worked best)")
    ap.add_argument("--reranker-shape", type=shape_arg, default=DEFAULT_SHAPE,
                    metavar="[line+]TREESxLEAVES@RATE",
                    help="re-ranker size (default: training's, %(default)s); "
                         "bench.quality.reranker_shapes says what a size is worth")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serve-")))
        redis_port = services.free_port()
        redis_ctx = redis_process(redis_port, tmp)
        stack.enter_context(redis_ctx)
        cosmos = services.cosmos_server()
        endpoint = stack.enter_context(cosmos)
        env = {
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port),
            "REDIS_MAX_CONNECTIONS": "64",
            "COSMOS_ENDPOINT": endpoint, "COSMOS_KEY": services.COSMOS_KEY,
            "COSMOS_DATABASE": "bench", "COSMOS_CREATE_CONTAINERS": "true",
            "COSMOS_VERIFY_TLS": "false", "COSMOS_TIMEOUT_SECONDS": "0.5",
            "RECO_ARTIFACTS_DIR": str(tmp / "artifacts"), "RECO_DATA_DIR": str(tmp),
            "RECO_BREAKER_RESET_SECONDS": "1",
        }
        settings = Settings(**{k: v for k, v in env.items()})  # type: ignore[arg-type]
        version = load(settings, args.users, args.reranker_shape)
        api_port = services.free_port()
        base = f"http://127.0.0.1:{api_port}"
        stack.enter_context(api_server(api_port, env, args.workers))
        ready = wait_ready(base)
        print(f"API ready: version {ready['model']['activeVersion']} (re-ranker "
              f"{ready['model']['reranker']}, {args.reranker_shape}, {CANDIDATES} candidates "
              f"re-ranked), uvicorn workers {args.workers} (uvloop, httptools) for both endpoints, "
              f"wrk -t2 -c{args.connections} from its own process")
        assert ready["model"]["activeVersion"] == version
        with urllib.request.urlopen(f"{base}/api/recommendations/u1?k=10") as r:
            sample = json.loads(r.read())
        print(f"sample answer: source {sample['source']}, "
              f"{len(sample['items'])} items, first {sample['items'][0]}")

        # 1. full path vs bare GET, alternating rounds, medians
        wrk(base, "/api/recommendations/u", args.users, 3, args.connections)  # warm-up
        wrk(base, "/bench/bare/u", args.users, 3, args.connections)
        bare_runs, full_runs = [], []
        for _ in range(args.rounds):
            bare_runs.append(wrk(base, "/bench/bare/u", args.users, args.seconds,
                                 args.connections))
            full_runs.append(wrk(base, "/api/recommendations/u", args.users, args.seconds,
                                 args.connections))
        bare, full = median_of(bare_runs), median_of(full_runs)
        print(f"\n1. throughput and latency (median of {args.rounds} x {args.seconds:.0f} s)")
        show("bare GET endpoint", bare)
        show("full recommendation path", full)
        ratio_rps, ratio_p99 = full["rps"] / bare["rps"], full["p99"] / bare["p99"]
        errors = sum(int(r["errors"]) for r in full_runs)
        degraded = sum(int(r["degraded"]) for r in full_runs)
        print(f"  ratio full/bare: throughput {ratio_rps:.2f}x (target >= 0.7), "
              f"p99 {ratio_p99:.2f}x (target <= 3); full path over all rounds: errors {errors} "
              f"(target 0), degraded answers {degraded} (target 0, Redis is up)")

        # 2. Redis stopped in the middle, then back with its data
        print("\n2. Redis stopped for 4 s in the middle of a 14 s run (users with Cosmos docs)")
        snapshot(redis_port)
        out = tmp / "redis_timeline.json"
        driver = drive(base, STORE_USERS, 14, 50, out)
        time.sleep(4)
        redis_ctx.__exit__(None, None, None)  # stop
        stopped = time.monotonic()
        time.sleep(4)
        restarted = redis_process(redis_port, tmp)
        stack.enter_context(restarted)
        back_after = time.monotonic() - stopped
        driver.wait()
        timeline = json.loads(out.read_text())
        summarise(timeline, [("before (Redis up)", 0, 4), ("Redis down", 4, 8),
                             (f"Redis back (after {back_after:.1f} s)", 8, 11),
                             ("recovered (last 3 s)", 11, 14)])

        # 3. Cosmos stopped: cache hits keep their speed
        cosmos.__exit__(None, None, None)
        time.sleep(0.5)
        down = wrk(base, "/api/recommendations/u", args.users, args.seconds, args.connections)
        print("\n3. Cosmos-protocol server stopped")
        show("full path, Cosmos down", down)
        print(f"  ratio to full path with Cosmos up: throughput {down['rps'] / full['rps']:.2f}x,"
              f" p99 {down['p99'] / full['p99']:.2f}x")


if __name__ == "__main__":
    main()
