"""The analysis that brought two blend members into the pipeline, kept to rerun its figures.

    python -m bench.quality.leads [--data ../shared/data/ml-100k]

Members added to the pipeline's tuned EASE + ALS blend (standardised scores, as `Blend` adds
them): EASE on weights centred by their global mean (what a rating says beyond "seen"), and
EASE whose Gram comes from sessions (a user's interactions with at most `gap` seconds between
them) while scores come from the user's whole history. Weights are chosen on the mean of three
validation folds carved from train; the test figure of that choice is printed, and, for
analysis only, the best test figure over the same grid. Kept so the figures quoted in
`bench/quality/README.md` can be rerun.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import sparse

from bench.quality.run import DEFAULT_DATA
from training import metrics
from training.datasets import load_movielens
from training.generators.base import top_n
from training.generators.ease_variants import CentredEASE, SessionEASE
from training.generators.ensemble import standardise_rows
from training.generators.selector import make
from training.interactions import Interactions
from training.pipeline import DefaultPipeline, PipelineConfig
from training.splits import split, validation_split

FloatArray = npt.NDArray[np.float32]
SESSIONS = [(0, 0.5), (0, 2.0), (60, 0.5), (60, 2.0)]  # (gap seconds, EASE reg_scale)
CENTRED_WEIGHTS = (0.0, 0.25, 0.4)
SESSION_WEIGHTS = (0.0, 0.25, 0.5)


BASE = ("ease", "als")  # the blend the leads were measured on top of


def components(data: Interactions, params: dict[str, dict[str, object]]) -> dict[str, FloatArray]:
    """Standardised scores of every member for every user of `data`."""
    binary = data.matrix(binary=True)
    users = np.arange(data.n_users)
    out = {}
    for name in BASE:
        gen = make(name, params[name])
        gen.fit(binary)
        out[name] = standardise_rows(gen.scores(users))
    centred = CentredEASE(reg_scale=8.0)
    centred.fit_interactions(data)
    out["centred"] = standardise_rows(centred.scores(users))
    for gap, reg in SESSIONS:
        session = SessionEASE(reg_scale=reg, gap_seconds=gap)
        session.fit_interactions(data)
        out[f"session{gap}s/{reg:g}"] = standardise_rows(session.scores(users))
    return out


def scores_of(total: FloatArray, exclude: sparse.csr_matrix,
              truth: sparse.csr_matrix) -> tuple[float, float]:
    recs, _ = top_n(total.__getitem__, np.arange(exclude.shape[0]), 10, exclude,
                    exclude.shape[1])
    return metrics.ndcg_at_k(recs, truth, 10), metrics.precision_at_k(recs, truth, 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    data, _ = load_movielens(args.data)
    train, test = split(data, "stratified")
    pipe = DefaultPipeline(PipelineConfig(protocol="stratified", rerank=False))
    pipe.fit(train)
    params = pipe.report.params
    print(f"the pipeline's blend: {params}, weights {pipe.report.weights}")
    folds = [validation_split(train, "stratified", 0.2, seed) for seed in (7, 8, 9)]
    folds.append((train, test))
    built = [(components(f, params), f.matrix(binary=True), t.matrix(binary=True))
             for f, t in folds]
    rows = []
    for session, w_c, w_s in itertools.product(
        [f"session{g}s/{r:g}" for g, r in SESSIONS], CENTRED_WEIGHTS, SESSION_WEIGHTS
    ):
        figures = []
        for parts, exclude, truth in built:
            total = w_c * parts["centred"] + w_s * parts[session]
            for name, w in zip(BASE, pipe.report.weights, strict=False):
                total = total + w * parts[name]
            figures.append(scores_of(total, exclude, truth))
        val = float(np.mean([f[0] for f in figures[:3]]))
        rows.append((val, figures[3], (session, w_c, w_s)))
    base = next(r for r in rows if r[2][1:] == (0.0, 0.0))
    chosen = max(rows, key=lambda r: r[0])
    best_test = max(rows, key=lambda r: r[1][0])
    for label, (val, (ndcg, prec), setting) in (
        ("pipeline blend alone", base), ("chosen on validation", chosen),
        ("best on test (analysis only)", best_test),
    ):
        print(f"{label:<30} val nDCG@10 {val:.4f}  test nDCG@10 {ndcg:.4f}  P@10 {prec:.4f}  "
              f"(session member, centred weight, session weight) = {setting}")


if __name__ == "__main__":
    main()
