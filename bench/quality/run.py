"""Offline quality benchmark: the default pipeline next to its baselines and published numbers.

    python -m bench.quality.run [--data ../shared/data/ml-100k] [--protocol both] [--synthetic]

Both protocols run in one go: Microsoft Recommenders' stratified 75/25 split (seed 42), whose
MovieLens table we quote, and a per-user temporal split (latest 20% of each user is test).
`--synthetic` times the pipeline on a generated 17,000-item catalogue instead.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets import category_matrix, load_movielens
from training.evaluate import evaluate_generator
from training.generators.als import ALS
from training.generators.base import CandidateGenerator, Recommender, fit_generator
from training.generators.ease import EASE
from training.generators.item_knn import ItemKNN
from training.generators.popularity import Popularity
from training.generators.selector import make
from training.interactions import Interactions
from training.pipeline import DefaultPipeline, PipelineConfig
from training.reranker import DEFAULT_SHAPE, Shape, shape_arg
from training.splits import split

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k"
COLUMNS = ("ndcg@10", "precision@10", "recall@10", "map@10", "map")
# Microsoft Recommenders README, MovieLens 100k, stratified 75/25, top-10 (their `map` column).
PUBLISHED = [
    (
        "BiVAE (MS Recommenders)",
        {"ndcg@10": 0.4751, "precision@10": 0.4118, "recall@10": 0.2191, "map": 0.1461},
    ),
    ("EASE (commonly reported)", {"ndcg@10": 0.48}),
]


def implicit_als_defaults() -> ALS:
    """The `implicit` library's own ALS defaults: the factor-model baseline of every table."""
    return ALS(factors=100, regularization=0.01, alpha=1.0, iterations=15)


def ease_500() -> EASE:
    """Closed-form EASE at the lambda usually quoted for MovieLens."""
    return EASE(reg=500.0)


def _fit(gen: CandidateGenerator, train: Interactions) -> float:
    t0 = time.perf_counter()
    fit_generator(gen, train.matrix(binary=True), train)  # the EASE variants want the rows
    return time.perf_counter() - t0


def run_protocol(
    data: Interactions, categories: np.ndarray, protocol: str, budget: float | None,
    shape: Shape = DEFAULT_SHAPE,
) -> list[dict[str, Any]]:
    """Every row of the table for one protocol; tuned rows reuse the pipeline's choice."""
    train, test = split(data, protocol)
    rows: list[dict[str, Any]] = []

    def add(label: str, gen: Recommender, seconds: float) -> None:
        m = evaluate_generator(gen, train, test, 10, categories)
        rows.append({"model": label, "fit_s": seconds, **m})

    baselines: list[tuple[str, CandidateGenerator]] = [
        ("popularity", Popularity()),
        ("implicit ALS (library defaults)", implicit_als_defaults()),
        ("EASE lambda=500", ease_500()),
        ("item-kNN (100 nn, shrink 10)", ItemKNN(100, 10.0)),
    ]
    for label, gen in baselines:
        add(label, gen, _fit(gen, train))
    pipe = DefaultPipeline(PipelineConfig(protocol=protocol, budget_seconds=budget,
                                          reranker_shape=shape))
    t0 = time.perf_counter()
    pipe.fit(train, categories)
    pipe_s = time.perf_counter() - t0
    for name, params in pipe.report.params.items():
        gen = make(name, params)
        add(f"{name} tuned on validation {params}", gen, _fit(gen, train))
    add("default pipeline", pipe, pipe_s)
    rows[-1]["report"] = {
        "plan": pipe.report.plan,
        "weights": pipe.report.weights,
        "reranker": pipe.report.reranker,
        "seconds": {k: round(v, 2) for k, v in pipe.report.seconds.items()},
    }
    return rows


def print_table(protocol: str, rows: list[dict[str, Any]]) -> None:
    title = {
        "stratified": "MS Recommenders stratified split 75/25, seed 42",
        "temporal": "temporal split: latest 20% of each user",
    }[protocol]
    print(f"\n== {title} (top-10 over unseen items, all users) ==")
    head = f"{'model':58s} " + " ".join(f"{c:>12s}" for c in COLUMNS) + f" {'fit s':>8s}"
    print(head)
    for r in rows:
        vals = " ".join(f"{r[c]:12.4f}" for c in COLUMNS)
        print(f"{r['model'][:58]:58s} {vals} {r['fit_s']:8.2f}")
    if protocol == "stratified":
        for label, vals_d in PUBLISHED:
            vals = " ".join(f"{vals_d[c]:12.4f}" if c in vals_d else f"{'':>12s}" for c in COLUMNS)
            print(f"{'published: ' + label:58s} {vals} {'':>8s}")
    for r in rows:
        if "report" in r:
            print(f"  default pipeline: {r['report']}")


def synthetic(n_items: int = 17_000, n_interactions: int = 96_000, seed: int = 0) -> Interactions:
    """Power-law catalogue: Zipf item popularity, skewed user activity, some taste clusters."""
    rng = np.random.default_rng(seed)
    n_users = n_interactions // 15
    n_clusters = 50
    item_cluster = rng.integers(0, n_clusters, n_items)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    rng.shuffle(pop)
    activity = rng.pareto(1.5, n_users) + 1.0
    per_user = np.maximum(3, np.round(activity / activity.sum() * n_interactions)).astype(int)
    users = np.repeat(np.arange(n_users), per_user)
    user_cluster = rng.integers(0, n_clusters, n_users)[users]
    in_cluster = rng.random(users.size) < 0.5
    items = rng.choice(n_items, size=users.size, p=pop / pop.sum())
    for c in range(n_clusters):  # half the picks come from the user's taste cluster
        members = np.flatnonzero(item_cluster == c)
        rows = np.flatnonzero(in_cluster & (user_cluster == c))
        p = pop[members] / pop[members].sum()
        items[rows] = rng.choice(members, size=rows.size, p=p)
    items[rng.permutation(users.size)[:n_items]] = np.arange(n_items)  # every item appears
    _, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)
    users, items = users[np.sort(first)], items[np.sort(first)]  # one row per (user, item)
    times = rng.integers(1_600_000_000, 1_631_536_000, users.size)
    return Interactions.from_columns(
        users.astype(str), items.astype(str), None, times, source="synthetic"
    )


def run_synthetic(budget: float | None) -> dict[str, Any]:
    data = synthetic()
    m = data.matrix(binary=True)
    print(
        f"\n== synthetic catalogue: {data.n_items} items, {data.n_users} users, "
        f"{m.nnz} interactions =="
    )
    als_runs = []
    for _ in range(3):  # the fastest of three: a conservative yardstick on a shared machine
        als = implicit_als_defaults()
        t0 = time.perf_counter()
        als.fit(m)
        als_runs.append(time.perf_counter() - t0)
    als_s = min(als_runs)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    pipe = DefaultPipeline(PipelineConfig(budget_seconds=budget))
    pipe.fit(data)
    pipe_s = time.perf_counter() - t0
    pipe.recommend(np.arange(data.n_users), 10)
    rec_s = time.perf_counter() - t0 - pipe_s
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "implicit_als_fit_s": als_s,
        "pipeline_fit_s": pipe_s,
        "pipeline_recommend_all_s": rec_s,
        "ratio_to_als": pipe_s / als_s,
        "tracemalloc_peak_mib": peak / 2**20,
        "max_rss_mib": rss1 / 1024,
        "max_rss_growth_mib": (rss1 - rss0) / 1024,
        "plan": pipe.report.plan,
        "reranker": pipe.report.reranker,
        "seconds": {k: round(v, 2) for k, v in pipe.report.seconds.items()},
    }
    print(f"implicit ALS fit (library defaults, best of 3): {als_s:6.2f} s")
    print(
        f"default pipeline fit (tune+rerank+refit):     {pipe_s:8.2f} s  "
        f"({pipe_s / als_s:.1f}x ALS)"
    )
    print(f"default pipeline top-10 for all users:        {rec_s:8.2f} s")
    print(f"peak Python-heap memory (tracemalloc):        {peak / 2**20:8.1f} MiB")
    print(
        f"process max RSS (getrusage):                  {rss1 / 1024:8.1f} MiB "
        f"(+{(rss1 - rss0) / 1024:.1f} during fit)"
    )
    for trial in pipe.report.trials:
        print(f"  tuning trial {trial}")
    print(f"plan: {pipe.report.plan}; reranker: {pipe.report.reranker}; stages: {out['seconds']}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="MovieLens folder (default %(default)s)"
    )
    ap.add_argument("--protocol", choices=("stratified", "temporal", "both"), default="both")
    ap.add_argument(
        "--synthetic", action="store_true", help="time the 17,000-item synthetic catalogue instead"
    )
    ap.add_argument(
        "--budget", type=float, default=None, help="tuning seconds (default: scales with data)"
    )
    ap.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    ap.add_argument("--reranker-shape", type=shape_arg, default=DEFAULT_SHAPE,
                    metavar="[line+]TREESxLEAVES@RATE",
                    help="the pipeline's re-ranker size (default %(default)s)")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    if args.synthetic:
        results["synthetic"] = run_synthetic(args.budget)
    else:
        data, meta = load_movielens(args.data)
        categories, _ = category_matrix(data.item_ids, meta)
        print(
            f"{data.source}: {data.n_users} users, {data.n_items} items, {len(data)} interactions"
        )
        protocols = ("stratified", "temporal") if args.protocol == "both" else (args.protocol,)
        for protocol in protocols:
            rows = run_protocol(data, categories, protocol, args.budget, args.reranker_shape)
            print_table(protocol, rows)
            results[protocol] = rows
            sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
