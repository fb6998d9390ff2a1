"""Hands a tenant's retrain to the Databricks job (training/spark_job.py) with `jobs.run_now`.

Authentication: DATABRICKS_HOST plus, for development, DATABRICKS_TOKEN (the SDK reads both);
in Azure, without a token, a Microsoft Entra token for the Azure Databricks resource from the
Function App's managed identity. Nothing is logged but the run id.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

AZURE_DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"  # the resource's app id
MAX_TOKEN = 64  # the Jobs API's limit on an idempotency token's length


def workspace_client() -> Any:
    """The SDK's own configuration when it has a token; else the managed identity's token."""
    from databricks.sdk import WorkspaceClient

    if os.environ.get("DATABRICKS_TOKEN") or os.environ.get("DATABRICKS_CLIENT_SECRET"):
        return WorkspaceClient()
    from azure.identity import DefaultAzureCredential

    token = DefaultAzureCredential().get_token(AZURE_DATABRICKS_SCOPE).token
    return WorkspaceClient(host=os.environ.get("DATABRICKS_HOST"), token=token)


def job_parameters(tenant: str, window_days: int) -> dict[str, str]:
    """The job-level parameters job.json / databricks.yml declare (values are strings)."""
    return {"tenant": tenant, "window_days": str(window_days)}


def idempotency_token(tenant: str, now: datetime) -> str:
    """One token per tenant and hour. A tenant id may be 128 characters and the Jobs API takes
    64, so a long one is replaced by a digest (still one token per tenant)."""
    hour = f"{now:%Y%m%d%H}"
    token = f"retrain-{tenant}-{hour}"
    if len(token) <= MAX_TOKEN:
        return token
    return f"retrain-{hashlib.sha256(tenant.encode()).hexdigest()[:40]}-{hour}"


def submit_retrain(job_id: int, tenant: str, window_days: int, client: Any | None = None) -> int:
    """Starts one run of the job for `tenant` and returns its run id (does not wait for it)."""
    if client is None:
        client = workspace_client()
    # One run per tenant and hour even if the timer fires twice (the job also allows only one
    # concurrent run): Databricks returns the existing run for a repeated idempotency token.
    waiter = client.jobs.run_now(job_id=job_id,
                                 idempotency_token=idempotency_token(tenant, datetime.now(UTC)),
                                 job_parameters=job_parameters(tenant, window_days))
    run_id = int(waiter.response.run_id if hasattr(waiter, "response") else waiter.run_id)
    log.info("tenant %s: Databricks job %d started as run %d", tenant, job_id, run_id)
    return run_id
