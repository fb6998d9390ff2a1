"""`list-versions`: a tenant's model versions, oldest first, with status and the active one."""

from __future__ import annotations

import argparse
from typing import Any

from shared.ids import is_valid_tenant, tenant_error
from shared.runtime import get_runtime
from training.interactions import DataError
from training.publish import active_pointer, version_docs, version_status


def tenant_arg(value: str | None, default: str) -> str:
    """The tenant a command is given (`--tenant`, else the default), refused (exit 2) with the
    tenant rule when it breaks it."""
    tenant = value or default
    if not is_valid_tenant(tenant):
        raise DataError(tenant_error(tenant))
    return tenant


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("list-versions", help=__doc__)
    p.add_argument("--tenant", default=None)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    runtime = get_runtime()
    tenant = tenant_arg(args.tenant, runtime.settings.default_tenant)
    store = runtime.backends.store
    docs = version_docs(store, tenant)
    if not docs:
        print(f"tenant '{tenant}' has no model versions yet")
        return 0
    pointer = active_pointer(store, tenant) or {}
    active, previous = pointer.get("version"), pointer.get("previous")
    print(f"{'version':<24} {'status':<8} {'created':<32} {'generator':<28} ndcg@10")
    for doc in docs:
        manifest = doc.get("manifest") or {}
        ndcg = (manifest.get("metrics") or {}).get("holdout_ndcg@10")
        mark = "  <- active" if doc["id"] == active else (
            "  <- previous" if doc["id"] == previous else "")
        print(f"{doc['id']:<24} {version_status(doc):<8} {doc.get('created', ''):<32} "
              f"{str(manifest.get('generator', ''))[:28]:<28} "
              f"{'' if ndcg is None else f'{ndcg:.4f}'}{mark}")
    print(f"tenant '{tenant}': {len(docs)} versions, active {active}, previous {previous}")
    return 0
