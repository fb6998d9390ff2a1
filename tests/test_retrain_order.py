"""The timer retrains the tenants whose model is stalest first, so a run cut short by the
function timeout does not starve the same tenants every night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.model_registry import ModelVersion, save_version, set_active
from shared.settings import Settings
from shared.stores.factory import build_backends
from tests.helpers import runtime_on
from training.retrain import stalest_first


def test_tenants_without_a_model_then_oldest_model_first(tmp_path: Path) -> None:
    settings = Settings(RECO_DATA_DIR=str(tmp_path), RECO_ACTIVE_VERSION_REFRESH_SECONDS="0")
    runtime = runtime_on(settings, build_backends(settings))
    store = runtime.backends.store
    for tenant, age in (("fresh", timedelta(hours=1)), ("stale", timedelta(days=3))):
        created = (datetime.now(UTC) - age).isoformat()
        save_version(store, ModelVersion(tenant, f"v-{tenant}", created, []))
        set_active(store, tenant, f"v-{tenant}")
    order = stalest_first(runtime, ["fresh", "new-a", "stale", "new-b"])
    assert order == ["new-a", "new-b", "stale", "fresh"]
