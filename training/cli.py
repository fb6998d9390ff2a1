"""`python -m training ...`: the offline commands, each ending with a sentence of what it did."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shared.ids import ID_PATTERN, is_valid_id
from shared.runtime import get_runtime
from training.interactions import DataError, read_csv
from training.retrain import train_and_publish
from training.sample_data import write_sample


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample-data", help="write a synthetic interactions CSV")
    s.add_argument("--out", type=Path, required=True)

    r = sub.add_parser("retrain", help="train on a file and publish to the configured stores")
    r.add_argument("--interactions", type=Path, required=True,
                   help="CSV file, or a MovieLens 100K folder / u.data file")
    r.add_argument("--tenant", default=None)
    r.add_argument("--user-col", default="user_id")
    r.add_argument("--item-col", default="item_id")
    r.add_argument("--weight-col", default="weight")
    r.add_argument("--time-col", default="timestamp")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "sample-data":
            path = write_sample(args.out)
            print(f"wrote sample interactions to {path}")
            return 0
        if args.command == "retrain":
            runtime = get_runtime()
            tenant = args.tenant or runtime.settings.default_tenant
            if not is_valid_id(tenant):
                raise DataError(f"tenant '{tenant}' does not match {ID_PATTERN}")
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
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1
