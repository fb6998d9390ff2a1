"""`retrain`: train on a file and publish to the configured stores, then switch the tenant."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shared.ids import ID_RULE, is_valid_id
from shared.runtime import get_runtime
from training.interactions import DataError, read_csv
from training.retrain import train_and_publish


def add_interaction_columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user-col", default="user_id")
    p.add_argument("--item-col", default="item_id")
    p.add_argument("--weight-col", default="weight")
    p.add_argument("--time-col", default="timestamp")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("retrain", help=__doc__)
    p.add_argument("--interactions", type=Path, required=True,
                   help="CSV file, or a MovieLens 100K folder / u.data file")
    p.add_argument("--tenant", default=None)
    add_interaction_columns(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    runtime = get_runtime()
    tenant = args.tenant or runtime.settings.default_tenant
    if not is_valid_id(tenant):
        raise DataError(f"tenant '{tenant}' is not valid: {ID_RULE}")
    source = args.interactions
    if source.is_dir():
        source = source / "u.data"
    data = read_csv(source, args.user_col, args.item_col, args.weight_col, args.time_col)
    version = train_and_publish(runtime, data, tenant)
    print(
        f"published version {version.version} for tenant '{tenant}': "
        f"{data.n_users} users, {data.n_items} items, {len(data)} interactions"
    )
    return 0
