"""`rollback`: point a tenant back at the previous version (or a named one) in one write.

It takes no lease: the write is conditional on the version it read, so a publish switching
meanwhile stands and the operator is told to look again.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.model_registry import MODELS, active_version_id, restore_active, switch_active
from shared.runtime import get_runtime
from training.commands.list_versions import tenant_arg
from training.interactions import DataError
from training.publish import FILLING, READY, active_pointer, mark_version, version_status


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("rollback", help=__doc__)
    p.add_argument("--tenant", default=None)
    p.add_argument("--to", default=None, metavar="VERSION",
                   help="version to make active (default: the one the active version replaced)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    runtime = get_runtime()
    tenant = tenant_arg(args.tenant, runtime.settings.default_tenant)
    store = runtime.backends.store
    pointer = active_pointer(store, tenant)
    if pointer is None:
        raise DataError(f"tenant '{tenant}' has no active version to roll back")
    current = str(pointer["version"])
    target = args.to or pointer.get("previous")
    if not target:
        raise DataError(f"tenant '{tenant}' has no previous version; pass --to VERSION")
    target = str(target)
    if target == current:
        raise DataError(f"version {target} is already active for tenant '{tenant}'")
    doc = store.read(MODELS, target, tenant)
    if doc is None or doc.get("kind") != "version":
        raise DataError(f"tenant '{tenant}' has no version '{target}' (see list-versions)")
    status = version_status(doc)
    if status != READY:
        raise DataError(
            f"version {target} of tenant '{tenant}' is {status}: its candidate lists are not "
            "all in the store, so it cannot be served"
        )
    current_doc = store.read(MODELS, current, tenant) or {}
    if version_status(current_doc) == FILLING:  # switched to, interrupted before its mark:
        mark_version(store, tenant, current, READY)  # complete, so it can be rolled forward to
    written = switch_active(store, tenant, target, expected=current)
    if written is None:
        raise DataError(f"the active version of tenant '{tenant}' changed during the rollback "
                        f"(from {current} to {active_version_id(store, tenant)}): nothing was "
                        "switched; see list-versions, then roll back again if still wanted")
    after = version_status(store.read(MODELS, target, tenant) or {})
    if after != READY:  # an expiry began meanwhile (it reads the pointer after its mark)
        # the pointer as it was, `previous` included, unless another switch came since
        if not restore_active(store, pointer, written):
            raise DataError(f"version {target} of tenant '{tenant}' began expiring during the "
                            f"rollback, and the active version has been switched since (to "
                            f"{active_version_id(store, tenant)}); see list-versions")
        raise DataError(f"version {target} of tenant '{tenant}' began expiring during the "
                        f"rollback; version {current} stays active")
    print(f"tenant '{tenant}' now serves version {target} (was {current}); "
          f"roll forward with: rollback --tenant {tenant} --to {current}")
    return 0
