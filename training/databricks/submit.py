"""Hands a tenant's retrain to the Databricks job (training/spark_job.py) with `jobs.run_now`.

Authentication is the SDK's own: DATABRICKS_HOST plus the Function App's managed identity
(ARM_USE_MSI / ARM_CLIENT_ID) or, for development, DATABRICKS_TOKEN. Nothing is logged but the
run id.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


def job_parameters(tenant: str, window_days: int) -> dict[str, str]:
    """The job-level parameters job.json / databricks.yml declare (values are strings)."""
    return {"tenant": tenant, "window_days": str(window_days)}


def submit_retrain(job_id: int, tenant: str, window_days: int, client: Any | None = None) -> int:
    """Starts one run of the job for `tenant` and returns its run id (does not wait for it)."""
    if client is None:
        from databricks.sdk import WorkspaceClient

        client = WorkspaceClient()
    # One run per tenant and hour even if the timer fires twice (the job also allows only one
    # concurrent run): Databricks returns the existing run for a repeated idempotency token.
    token = f"retrain-{tenant}-{datetime.now(UTC):%Y%m%d%H}"
    waiter = client.jobs.run_now(job_id=job_id, idempotency_token=token,
                                 job_parameters=job_parameters(tenant, window_days))
    run_id = int(waiter.response.run_id if hasattr(waiter, "response") else waiter.run_id)
    log.info("tenant %s: Databricks job %d started as run %d", tenant, job_id, run_id)
    return run_id
