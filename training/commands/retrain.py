"""`retrain`: train on a file and publish to the configured stores, then switch the tenant."""

from __future__ import annotations

import argparse
from typing import Any

from shared.runtime import get_runtime
from training.commands.list_versions import tenant_arg
from training.commands.offline_io import add_interaction_args, read
from training.retrain import train_and_publish


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("retrain", help=__doc__)
    add_interaction_args(p, "--interactions",
                         "CSV/Parquet file, or a MovieLens folder (100K, 1M or latest)")
    p.add_argument("--tenant", default=None)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    runtime = get_runtime()
    tenant = tenant_arg(args.tenant, runtime.settings.default_tenant)
    data, metadata = read(args.interactions, args)
    version = train_and_publish(runtime, data, tenant, metadata)
    # what was trained and published: cleaning may have dropped rows, users and items
    rows = dict(version.manifest.get("rows") or {})
    print(
        f"published version {version.version} for tenant '{tenant}': "
        f"{rows.get('users', data.n_users)} users, {rows.get('items', data.n_items)} items, "
        f"{rows.get('interactions', len(data))} interactions (of {len(data)} read)"
    )
    return 0
