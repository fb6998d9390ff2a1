"""The Databricks job definitions (no workspace is reachable: the fields the Jobs API requires are
checked here) and the hand-off from the timer through the real databricks-sdk, up to the wire:
a local HTTP server stands in for the workspace's Jobs API."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
import yaml

from shared.stores.factory import build_backends
from tests.conftest import azure_settings
from tests.helpers import runtime_on
from training.spark_job import build_parser

ROOT = Path(__file__).resolve().parents[1]
JOB_JSON = ROOT / "training" / "databricks" / "job.json"
BUNDLE = ROOT / "databricks.yml"
PARAM_REF = re.compile(r"\{\{job\.parameters\.([a-z_]+)\}\}")


def _jobs() -> list[tuple[str, dict[str, Any]]]:
    bundle = yaml.safe_load(BUNDLE.read_text())
    variables = {k: v.get("default") for k, v in bundle.get("variables", {}).items()}

    def resolve(value: Any) -> Any:  # bundle ${var.x} substitution, as the CLI does
        if isinstance(value, str):
            return re.sub(r"\$\{var\.([a-z_]+)\}", lambda m: str(variables[m.group(1)]), value)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    (job,) = bundle["resources"]["jobs"].values()
    return [("job.json", json.loads(JOB_JSON.read_text())), ("databricks.yml", resolve(job))]


@pytest.mark.parametrize(("name", "job"), _jobs(), ids=["job.json", "databricks.yml"])
def test_job_definition_has_what_the_jobs_api_requires(name: str, job: dict[str, Any]) -> None:
    from databricks.sdk.service.jobs import JobSettings

    settings = JobSettings.from_dict(job)  # parses (the SDK does not validate: we do)
    assert settings.name and settings.max_concurrent_runs == 1
    assert settings.tasks, "a job needs at least one task"
    keys = [t.task_key for t in settings.tasks]
    assert len(keys) == len(set(keys)) and all(re.fullmatch(r"[\w\-]{1,100}", k) for k in keys)
    clusters = {c.job_cluster_key: c for c in settings.job_clusters or []}
    for task in settings.tasks:
        # compute: a job cluster, an existing cluster, a new cluster, or serverless environment
        assert task.job_cluster_key or task.existing_cluster_id or task.new_cluster \
            or task.environment_key, f"{name}: task {task.task_key} has no compute"
        if task.job_cluster_key:
            cluster = clusters[task.job_cluster_key].new_cluster
            assert cluster is not None and cluster.spark_version and cluster.node_type_id
            assert cluster.num_workers is not None or cluster.autoscale is not None
        # entry point: the repository's Spark job, with arguments its own parser accepts
        entry = task.spark_python_task
        assert entry is not None and entry.python_file.lstrip("./") == "training/spark_job.py"
        assert entry.parameters is not None
        assert (ROOT / entry.python_file.lstrip("./")).is_file()
        defaults = {p.name: p.default for p in settings.parameters or []}
        used = {m for arg in entry.parameters for m in PARAM_REF.findall(arg)}
        assert used <= set(defaults), f"{name}: undeclared job parameters {used - set(defaults)}"
        args = [PARAM_REF.sub(lambda m, d=defaults: str(d[m.group(1)]), a)  # type: ignore[misc]
                for a in entry.parameters]
        parsed = build_parser().parse_args(args)
        assert parsed.tenant == defaults["tenant"]
        assert parsed.window_days == int(defaults["window_days"])
    # the parameters the timer sends with run_now are declared
    from training.databricks.submit import job_parameters

    assert set(job_parameters("t", 30)) <= {p.name for p in settings.parameters or []}
    schedule = settings.schedule
    assert schedule is not None and schedule.timezone_id
    assert len(schedule.quartz_cron_expression.split()) in (6, 7)
    first_cluster = clusters[str(settings.tasks[0].job_cluster_key)].new_cluster
    assert first_cluster is not None
    env = first_cluster.spark_env_vars or {}
    for value in env.values():  # secrets come from a secret scope, never inline
        assert "{{secrets/" in value or not re.search(r"(?i)key|password|token", value)
    assert "RECO_EXPERIMENTS" in env  # its pinned versions must survive this job's expiry
    # a cluster has no managed identity of its own: DefaultAzureCredential signs in with the
    # service principal the template grants data access (DATABRICKS_PRINCIPAL_ID)
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        assert env.get(name, "").startswith("{{secrets/"), name


class _JobsApi(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, dict[str, Any], dict[str, str]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append((self.path, body, dict(self.headers)))
        out = json.dumps({"run_id": 4242, "number_in_job": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jobs_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobsApi)
    _JobsApi.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET",
                "ARM_CLIENT_ID", "ARM_USE_MSI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test-token")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")
    yield _JobsApi.requests
    server.shutdown()


def test_submit_calls_run_now_with_the_job_parameters(jobs_api: list) -> None:
    from training.databricks.submit import submit_retrain

    assert submit_retrain(77, "shop", 30) == 4242
    ((path, body, headers),) = jobs_api
    assert path.endswith("/jobs/run-now")
    assert body["job_id"] == 77
    assert body["job_parameters"] == {"tenant": "shop", "window_days": "30"}
    assert body["idempotency_token"].startswith("retrain-shop-")
    assert headers["Authorization"] == "Bearer dapi-test-token"


def test_a_long_tenant_id_gets_a_token_the_jobs_api_takes(jobs_api: list) -> None:
    """The Jobs API refuses idempotency tokens over 64 characters; tenant ids may have 128."""
    from training.databricks.submit import MAX_TOKEN, submit_retrain

    long_a, long_b = "t" * 127 + "a", "t" * 127 + "b"  # alike up to their last character
    for tenant in (long_a, long_b, long_a):
        submit_retrain(77, tenant, 30)
    tokens = [body["idempotency_token"] for _, body, _ in jobs_api]
    assert all(len(t) <= MAX_TOKEN for t in tokens), tokens
    assert tokens[0] != tokens[1] and tokens[0] == tokens[2]  # one per tenant and hour


def test_the_timer_hands_a_large_tenant_to_databricks(
    jobs_api: list, redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from shared.model_registry import active_version_id
    from training.retrain import run_scheduled

    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_DATA_DIR=tmp_path / "data", RETRAIN_TENANTS="small,large",
                              RETRAIN_MAX_FUNCTION_ROWS=20, DATABRICKS_JOB_ID=77)
    runtime = runtime_on(settings, build_backends(settings))
    now = datetime.now(UTC).isoformat()
    runtime.sink.send(
        [{"eventId": f"s{i}", "tenant": "small", "userId": f"u{i % 4}", "itemId": f"i{i % 5}",
          "type": "click", "timestamp": now} for i in range(12)]
        + [{"eventId": f"l{i}", "tenant": "large", "userId": f"u{i % 9}", "itemId": f"i{i % 7}",
            "type": "click", "timestamp": now} for i in range(40)]
    )

    small, large = run_scheduled(runtime)

    assert small.status == "published", small.message
    assert large.status == "handed_off"
    assert "40 interactions exceed 20" in large.message and "run 4242" in large.message
    ((_, body, _),) = jobs_api
    assert body["job_id"] == 77 and body["job_parameters"]["tenant"] == "large"
    assert active_version_id(runtime.backends.store, "large") is None  # Databricks publishes it
