"""`fill-cache`: rebuild a version's Redis entries from its Cosmos documents (after a flush)."""

from __future__ import annotations

import argparse
from typing import Any

from shared.model_registry import MODELS
from shared.runtime import get_runtime
from shared.stores.artifacts import ArtifactNotFound
from training.commands.list_versions import tenant_arg
from training.interactions import DataError
from training.publish import EXPIRED, EXPIRING, FillOptions, fill_cache_from_store, version_status


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("fill-cache", help=__doc__)
    p.add_argument("--version", required=True)
    p.add_argument("--tenant", default=None)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    runtime = get_runtime()
    settings = runtime.settings
    tenant = tenant_arg(args.tenant, settings.default_tenant)
    doc = runtime.backends.store.read(MODELS, args.version, tenant)
    if doc is None or doc.get("kind") != "version":
        raise DataError(f"tenant '{tenant}' has no version '{args.version}' (see list-versions)")
    status = version_status(doc)
    if status in (EXPIRING, EXPIRED):
        raise DataError(f"version {args.version} of tenant '{tenant}' is {status}: "
                        "its store documents are deleted")
    options = FillOptions(chunk_users=settings.fill_chunk_users,
                          store_concurrency=settings.fill_store_concurrency)
    try:
        found, missing = fill_cache_from_store(runtime.backends, tenant, args.version,
                                               settings.cache_ttl_seconds, options)
    except ArtifactNotFound as exc:
        raise DataError(f"the artifact of version {args.version} is missing ({exc}); "
                        "its user list is needed to read the store") from None
    print(f"wrote {found} users' candidates of version {args.version} (tenant '{tenant}') "
          f"from the {runtime.backends.store.name} store to the {runtime.backends.cache.name} "
          f"cache" + (f"; {missing} users had no document" if missing else ""))
    return 0
