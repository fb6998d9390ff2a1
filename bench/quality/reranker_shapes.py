"""Re-ranker size against its worth: validation gain and request-time ONNX cost per shape.

    python -m bench.quality.reranker_shapes [--data ../shared/data/ml-100k]
                                            [--protocol temporal] [--splits 16]
                                            [--shapes 30x8@0.2,line+10x8@0.2,line+20x8@0.2]

The pipeline's blend is tuned and fitted on the validation fold's fit part exactly as
`DefaultPipeline.fit` does it, and its candidates for the validation users get their feature
rows and labels once (`training.reranker.training_rows`). Each shape is then scored as the gate
scores it: trained on a random half of those users, nDCG@10 gain over the blend's own order on
the other half. `--splits` different halves, the same for every shape, give a mean gain and a
paired difference from the default shape (mean and standard error): one half moves the gain
by about ±0.005. Only validation data is used; test is never read.

The ONNX time is the serving path's: `shared.serving.model_data.Reranker.score` (one thread)
on blocks of 16 users' rows drawn at random from the validation rows, CPU µs per 100
candidates, lowest and median of 15 repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bench.quality.run import DEFAULT_DATA
from shared.reranking.features import FEATURES
from shared.serving.model_data import Reranker
from training.datasets import category_matrix, load_movielens
from training.pipeline import DefaultPipeline, PipelineConfig
from training.reranker import (
    DEFAULT_SHAPE,
    Shape,
    TrainingRows,
    fitted_model,
    held_out_gain,
    shape_arg,
    to_onnx,
    training_rows,
)
from training.splits import split

REPEATS = 15
USERS_PER_CALL = 16  # about a worker's re-rank batch under load (bench/serve/README.md)
CALLS = 100


def shape_list(text: str) -> list[Shape]:
    return [shape_arg(part) for part in text.split(",")]


def onnx_us_per_100(rows: TrainingRows, shape: Shape, rng: np.random.Generator) -> list[float]:
    """CPU µs per 100 candidates of the serving re-ranker on random blocks of real rows."""
    model = fitted_model(rows.feats, rows.labels, 0, shape)
    reranker = Reranker(to_onnx(model), list(FEATURES), rows.cand.shape[1])
    block = USERS_PER_CALL * rows.cand.shape[1]
    starts = rng.integers(0, max(1, rows.feats.shape[0] - block), (REPEATS, CALLS))
    out = []
    for repeat in starts:
        t0 = time.process_time()
        for lo in repeat:
            reranker.score(rows.feats[lo : lo + block])
        out.append((time.process_time() - t0) / (CALLS * block) * 100 * 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--protocol", choices=("stratified", "temporal"), default="temporal")
    ap.add_argument("--splits", type=int, default=16, help="held-out halves (default 16)")
    ap.add_argument("--shapes", type=shape_list, default="30x8@0.2,line+10x8@0.2,line+20x8@0.2",
                    help="comma-separated [line+]TREESxLEAVES@RATE (the default shape is always "
                         "added; 30x8@0.2, trees alone, was the default until stop 18)")
    args = ap.parse_args(argv)
    shapes = [DEFAULT_SHAPE] + [s for s in args.shapes if s != DEFAULT_SHAPE]
    data, meta = load_movielens(args.data)
    categories, _ = category_matrix(data.item_ids, meta)
    train, _ = split(data, args.protocol)  # test is not used
    cfg = PipelineConfig(protocol=args.protocol)
    tuned = DefaultPipeline(cfg).tune(train)
    rows = training_rows(tuned.on_fit, tuned.fit, tuned.val, categories, cfg.n_candidates,
                         cfg.seed)
    print(f"{data.source}, {args.protocol} split: {rows.users.size} validation users x "
          f"{rows.cand.shape[1]} candidates from the tuned blend ({', '.join(tuned.members)})")
    gains: dict[Shape, list[float]] = {s: [] for s in shapes}
    for n in range(args.splits):
        half = np.random.default_rng(1000 + n).random(rows.users.size) < 0.5
        for shape in shapes:
            scored = held_out_gain(rows, half, cfg.k, cfg.seed, shape)
            if scored is not None:
                gains[shape].append(scored[1] - scored[0])
    rng = np.random.default_rng(0)
    print(f"\n{'shape ([line+]trees x leaves @ rate)':<38}{'val gain':>10}{'vs default':>20}"
          f"{'ONNX µs / 100 cand.':>24}")
    base = np.array(gains[DEFAULT_SHAPE])
    for shape in shapes:
        g = np.array(gains[shape])
        if g.size != base.size or not g.size:
            print(f"{shape}: no labels on a half")
            continue
        diff = g - base
        paired = ("(default)" if shape == DEFAULT_SHAPE else
                  f"{diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(diff.size):.4f}")
        cost = onnx_us_per_100(rows, shape, rng)
        print(f"{shape!s:<38}{g.mean():>+10.4f}{paired:>20}"
              f"{min(cost):>12.1f} /{statistics.median(cost):>6.1f}")
    print(f"\nmean over {base.size} held-out halves; ± is the standard error of the paired "
          "difference; ONNX: lowest / median of 15")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
