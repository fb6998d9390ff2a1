"""`recommend`: write top-k per training user (seen items removed) from an artifact folder."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from shared.stores.artifacts import ArtifactNotFound, LocalArtifactStore
from training.commands.offline_io import check_out
from training.interactions import DataError
from training.model import TrainedModel
from training.publish import load_model_at


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("recommend", help=__doc__)
    p.add_argument("--model", type=Path, required=True, help="artifact folder written by train")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", type=Path, required=True, help="CSV: user,item,rank,score")
    p.set_defaults(run=run)


def load(folder: Path) -> TrainedModel:
    if not (folder / "manifest.json").is_file():
        raise DataError(f"{folder} is not a model artifact (no manifest.json)")
    try:
        manifest = json.loads((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        manifest = None
    if not isinstance(manifest, dict):
        raise DataError(f"{folder}: manifest.json is not a JSON object; the artifact is damaged")
    try:
        return load_model_at(LocalArtifactStore(folder), "")
    except ArtifactNotFound as exc:
        raise DataError(f"{folder}: the artifact is incomplete ({exc} missing)") from None
    except TypeError:  # a manifest field of the wrong kind ("parameters": 5, ...)
        raise DataError(f"{folder}: manifest.json has fields of the wrong type; the artifact "
                        "is damaged") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        damaged = "items.json" if isinstance(exc, json.JSONDecodeError) else "candidates.npz"
        raise DataError(f"{folder}: {damaged} is damaged; train the model again") from None


PROGRESS_SECONDS = 10.0  # between progress lines on stderr


def check_k(k: int) -> None:
    if not 1 <= k <= 1000:
        raise DataError("--k must be between 1 and 1000")


def note_short_lists(model: TrainedModel, k: int) -> None:
    """Says when the lists are shorter than k: top-k (and metrics @k) then come from fewer."""
    if k > model.top_items.shape[1]:
        print(f"note: the artifact keeps {model.top_items.shape[1]} candidates per user",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    check_k(args.k)
    check_out(args.out, folder=False)
    model = load(args.model)
    note_short_lists(model, args.k)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    n_users = model.user_ids.shape[0]
    next_note = time.monotonic() + PROGRESS_SECONDS
    with args.out.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["user", "item", "rank", "score"])
        for code, user in enumerate(model.user_ids.tolist()):
            if time.monotonic() >= next_note:  # millions of users take minutes: say so
                print(f"... {code:,} of {n_users:,} users written", file=sys.stderr, flush=True)
                next_note = time.monotonic() + PROGRESS_SECONDS
            for rank, (item, score) in enumerate(model.candidates_for(code)[: args.k], start=1):
                out.writerow([user, item, rank, f"{score:.6g}"])
                rows += 1
    print(f"wrote {rows} recommendations for {model.user_ids.shape[0]} users to {args.out}")
    return 0
