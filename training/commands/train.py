"""`train`: fit the default pipeline on a file and write the model artifact to a folder."""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.stores.artifacts import LocalArtifactStore
from training.cleaning import duplicate_mask
from training.commands.offline_io import add_interaction_args, check_out, read
from training.datasets import category_matrix
from training.interactions import Interactions
from training.publish import manifest_of, new_version_id, write_artifact
from training.train import train_default


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("train", help=__doc__)
    add_interaction_args(p, "--interactions",
                         "CSV/Parquet file, or a MovieLens folder (100K, 1M or latest)")
    p.add_argument("--out", type=Path, required=True, help="folder the artifact is written to")
    p.add_argument("--candidates", type=int, default=100, help="candidates kept per user")
    p.add_argument("--tuning-seconds", type=float, default=60.0,
                   help="time budget in seconds (above 0) for choosing hyper-parameters on "
                        "the validation split")
    p.set_defaults(run=run)


def _step(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _without_duplicates(data: Interactions) -> Interactions:
    """Each (user, item, time) once, as `retrain` cleans it: a replayed row counted twice in
    popularity, weights and the re-ranker's item statistics."""
    dup = duplicate_mask(data)
    if not dup.any():
        return data
    _step(f"dropped {int(dup.sum())} duplicate rows (same user, item and time)")
    return data.subset(~dup)  # the first of each stays: every user and item keeps a row


def run(args: argparse.Namespace) -> int:
    if not 10 <= args.candidates <= 1000:
        print("error: --candidates must be between 10 and 1000", file=sys.stderr)
        return 2
    if not (math.isfinite(args.tuning_seconds) and args.tuning_seconds > 0):
        # NaN and infinities would also reach the manifest, which JSON readers then refuse
        print("error: --tuning-seconds must be a positive number of seconds", file=sys.stderr)
        return 2
    check_out(args.out, folder=True)  # before training, so a bad --out loses no work
    _step(f"reading {args.interactions}")
    data, metadata = read(args.interactions, args)
    data = _without_duplicates(data)
    _step(f"{len(data)} interactions, {data.n_users} users, {data.n_items} items; training "
          f"(tuning budget {args.tuning_seconds:.0f} s)")
    categories = category_matrix(data.item_ids, metadata)[0] if metadata else None
    started = time.perf_counter()
    model = train_default(data, args.candidates, args.tuning_seconds, metadata, categories)
    seconds = time.perf_counter() - started
    created = datetime.now(UTC)
    version = new_version_id(created)
    rows = {"interactions": len(data), "users": data.n_users, "items": data.n_items}
    manifest = manifest_of(model, "offline", version, created.isoformat(), rows,
                           {"fit_seconds": round(seconds, 2), "source": str(args.interactions)})
    _step(f"writing the artifact to {args.out}")
    # An earlier model's manifest would vouch for a half-written folder if writing failed:
    # without one, `recommend` and `evaluate` refuse the folder until a write completes.
    (args.out / "manifest.json").unlink(missing_ok=True)
    write_artifact(LocalArtifactStore(args.out), model, manifest, prefix="")
    print(f"trained {model.generator} in {seconds:.1f} s; artifact {version} written to "
          f"{args.out} ({data.n_users} users x {args.candidates} candidates)")
    return 0
