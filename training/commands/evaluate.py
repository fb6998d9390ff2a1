"""`evaluate`: score an artifact's top-k against a test file (metrics as JSON and a table)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from training import metrics
from training.commands.offline_io import add_interaction_args, read
from training.commands.recommend import check_k, load, note_short_lists
from training.datasets import category_matrix
from training.interactions import DataError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("evaluate", help=__doc__)
    p.add_argument("--model", type=Path, required=True, help="artifact folder written by train")
    add_interaction_args(p, "--test", "held-out interactions (CSV/Parquet, or MovieLens folder)")
    p.add_argument("--k", type=int, default=10)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_k(args.k)
    model = load(args.model)
    note_short_lists(model, args.k)  # scores @k of shorter lists: recall understated
    test, _ = read(args.test, args)
    liked = test.positive()  # a dislike (weight 0 or below) is never a hit
    if len(liked) == 0:
        raise DataError("no test row has a weight above 0: dislikes are never hits, so there "
                        "is nothing to score")
    test = liked
    user_code = {u: i for i, u in enumerate(model.user_ids.tolist())}
    item_code = {it: i for i, it in enumerate(model.item_ids.tolist())}
    test_users = test.user_ids[test.users].tolist()
    test_items = test.item_ids[test.items].tolist()
    known = [u in user_code for u in test_users]
    eval_users = sorted({user_code[u] for u, ok in zip(test_users, known, strict=True) if ok})
    if not eval_users:
        raise DataError("no test user appears in the model's training data")
    row_of = {u: r for r, u in enumerate(eval_users)}
    n_items = model.item_ids.shape[0]
    unknown_items: dict[str, int] = {}  # relevant items the model cannot know: still count
    rows, cols = [], []
    for user, item, ok in zip(test_users, test_items, known, strict=True):
        if not ok:
            continue
        col = item_code.get(item)
        if col is None:
            col = n_items + unknown_items.setdefault(item, len(unknown_items))
        rows.append(row_of[user_code[user]])
        cols.append(col)
    known_items = len({c for c in cols if c < n_items})
    if not known_items:  # ids written another way ("1.0" for 1): every metric would be 0
        raise DataError("none of the test items of the model's users is in its catalogue, so "
                        "every metric would be 0; ids are read as text ('1.0' is not '1')")
    truth = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)),
        shape=(len(eval_users), n_items + len(unknown_items)),
    )
    truth.data[:] = 1.0
    recs = model.top_items[eval_users, : args.k].astype(np.int32)
    result = metrics.ranking_metrics(recs, truth, args.k)
    result["coverage"] = metrics.catalog_coverage(recs, n_items, args.k)
    result["novelty"] = metrics.novelty(recs, model.popularity.astype(np.float64),
                                        model.user_ids.shape[0], args.k)
    result["popularity_bias"] = metrics.popularity_bias(recs, model.popularity, args.k)
    if model.item_metadata:
        cats = sparse.csr_matrix(category_matrix(model.item_ids, model.item_metadata)[0])
        result["diversity"] = metrics.intra_list_diversity(recs, cats, args.k)
    skipped = len({u for u, ok in zip(test_users, known, strict=True) if not ok})
    width = max(len(n) for n in result)
    print(f"{len(eval_users)} test users evaluated at k={args.k}"
          f" ({skipped} unknown to the model skipped)", file=sys.stderr)
    if unknown_items:
        print(f"  {len(unknown_items)} of {known_items + len(unknown_items)} test items are not "
              "in the model's catalogue (never recommended, still counted)", file=sys.stderr)
    for name, value in result.items():
        print(f"  {name:<{width}}  {value:.4f}", file=sys.stderr)
    print(json.dumps({"k": args.k, "users": len(eval_users), "skipped_users": skipped,
                      **{n: round(v, 6) for n, v in result.items()}}))
    return 0
