"""Reading interactions for the offline commands: a MovieLens folder or a CSV/Parquet file."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from training.datasets import load_movielens, read_interactions
from training.interactions import DataError, Interactions


def add_interaction_args(p: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    p.add_argument(flag, type=Path, required=True, help=help_text)
    p.add_argument("--user-col", default=None, help="user id column (default: 'user_id')")
    p.add_argument("--item-col", default=None, help="item id column (default: 'item_id')")
    p.add_argument("--weight-col", default=None,
                   help="weight or rating column (default: 'weight', used when present; a "
                        "column named here must exist)")
    p.add_argument("--time-col", default=None,
                   help="unix-seconds column (default: 'timestamp', used when present; a "
                        "column named here must exist)")


def read(path: Path, args: argparse.Namespace) -> tuple[Interactions, dict[str, dict[str, Any]]]:
    """Interactions and item metadata (titles, categories) where the source has them."""
    if path.is_dir() or path.name == "u.data":
        _no_column_flags(path, args)
        return load_movielens(path if path.is_dir() else path.parent)
    # a column the user named must be there: ignoring it would train with every weight 1 or
    # every timestamp 0 and say nothing; only the default names are optional
    named = [c for c in (args.weight_col, args.time_col) if c is not None]
    data = read_interactions(path, args.user_col or "user_id", args.item_col or "item_id",
                             args.weight_col or "weight",
                             args.time_col or "timestamp", require=named)
    return data, {}


def _no_column_flags(path: Path, args: argparse.Namespace) -> None:
    """MovieLens files have fixed columns: a column flag would be ignored without a word."""
    for flag in ("user_col", "item_col", "weight_col", "time_col"):
        if getattr(args, flag) is not None:
            name = "--" + flag.replace("_", "-")
            raise DataError(f"{path} is read as MovieLens, whose files have fixed columns: "
                            f"{name} applies to CSV and Parquet files")


def check_out(path: Path, folder: bool) -> None:
    """Fails with a sentence, before any work is done, when `--out` cannot be written: a file
    given where a folder is wanted or the reverse, a file in the way, no permission.

    Nothing is created: the nearest existing folder on the way is probed with a temporary file.
    """
    if path.exists() and path.is_dir() != folder:
        want = "a folder for the artifact" if folder else "a file name for the CSV"
        raise DataError(f"--out {path} is {'a file' if folder else 'a folder'}; give {want}")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise DataError(f"--out {path} is not writable")
    existing = path if folder else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"--out {path} cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise DataError(f"--out {path} cannot be written in {existing} "
                        f"({exc.strerror or exc})") from None
