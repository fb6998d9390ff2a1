"""Reading interactions for the offline commands: a MovieLens folder or a CSV/Parquet file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.datasets import load_movielens, read_interactions
from training.interactions import Interactions


def add_interaction_args(p: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    p.add_argument(flag, type=Path, required=True, help=help_text)
    p.add_argument("--user-col", default="user_id")
    p.add_argument("--item-col", default="item_id")
    p.add_argument("--weight-col", default="weight")
    p.add_argument("--time-col", default="timestamp")


def read(path: Path, args: argparse.Namespace) -> tuple[Interactions, dict[str, dict[str, Any]]]:
    """Interactions and item metadata (titles, categories) where the source has them."""
    if path.is_dir():
        return load_movielens(path)
    if path.name == "u.data":
        return load_movielens(path.parent)
    data = read_interactions(path, args.user_col, args.item_col, args.weight_col, args.time_col)
    return data, {}
