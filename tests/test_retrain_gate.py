"""The quality gate: a worse model is never published; the first must match popularity.

Runs the whole retrain pipeline on real Redis, the Cosmos-protocol server and Azurite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from shared.model_registry import active_version_id
from shared.runtime import Runtime
from shared.stores.factory import build_backends
from tests.conftest import azure_settings
from tests.helpers import client_for, runtime_on
from tests.retrain_data import clustered, ease_trainer, least_popular_trainer
from training.publish import version_docs
from training.retrain import RetrainConfig, retrain_tenant
from training.train import train_default

TENANT = "shop"


@pytest.fixture
def runtime(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
            tmp_path: Path) -> Runtime:
    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_DATA_DIR=tmp_path / "data", RETRAIN_TUNING_SECONDS=1)
    return runtime_on(settings, build_backends(settings))


def _answer(runtime: Runtime, user: str) -> dict:
    body = client_for(runtime).get(f"/api/recommendations/{user}?k=5&tenant={TENANT}").json()
    return body


def test_first_model_from_the_default_pipeline_beats_popularity_and_is_recorded(
    runtime: Runtime, tmp_path: Path
) -> None:
    data = clustered()
    result = retrain_tenant(runtime, TENANT, data,
                            trainer=lambda d: train_default(d, 100, tuning_seconds=1.0))
    assert result.status == "published", result.message
    assert result.gate is not None and result.gate.baseline_name == "popularity"
    assert result.gate.candidate > result.gate.baseline
    assert active_version_id(runtime.backends.store, TENANT) == result.version
    manifest = runtime.backends.artifacts.get(f"{TENANT}/{result.version}/manifest.json")
    assert b'"gate"' in manifest and b"holdout_ndcg@10" in manifest
    names = {f.rsplit("/", 1)[-1] for f in runtime.backends.artifacts.list(
        f"{TENANT}/{result.version}")}
    assert {"candidates.npz", "item_stats.npz", "similar.npz", "evaluation.json"} <= names
    assert result.published is not None
    kept_reranker = str(result.published.manifest["parameters"]["reranker"]).startswith("kept")
    assert ("reranker.onnx" in names) == kept_reranker  # shipped exactly when the pipeline kept it
    body = _answer(runtime, "u0")
    assert body["modelVersion"] == result.version and body["source"] == "cache"
    seen = {str(i) for u, i in zip(data.user_ids[data.users], data.item_ids[data.items],
                                   strict=True) if u == "u0"}
    assert not seen & {i["itemId"] for i in body["items"]}
    # MLflow: a run with the gate's numbers and a registered model version for this version
    import mlflow

    uri = runtime.settings.mlflow_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    (mv,) = client.search_model_versions(f"name='recommender-{TENANT}'")
    assert mv.tags["version"] == result.version
    assert mv.run_id is not None
    run = client.get_run(mv.run_id)
    assert run.data.metrics["gate_passed"] == 1.0
    assert run.data.metrics["holdout_ndcg_at_10"] == pytest.approx(result.gate.candidate)
    logged = {a.path.split("/")[-1] for a in client.list_artifacts(mv.run_id, "model")}
    assert {"manifest.json", "evaluation.json"} <= logged
    assert ("reranker.onnx" in logged) == kept_reranker


def test_a_model_that_fails_the_gate_is_not_published_and_the_served_version_stays(
    runtime: Runtime,
) -> None:
    good = retrain_tenant(runtime, TENANT, clustered(), trainer=ease_trainer())
    assert good.status == "published", good.message
    before = _answer(runtime, "u3")
    blobs_before = runtime.backends.artifacts.list(TENANT)

    bad = retrain_tenant(runtime, TENANT, clustered(seed=0), trainer=least_popular_trainer())

    assert bad.status == "rejected"
    assert bad.gate is not None and not bad.gate.passed
    assert bad.gate.baseline_name.startswith(f"active {good.version}")
    assert "was not published" in bad.message and f"version {good.version} stays" in bad.message
    store = runtime.backends.store
    assert active_version_id(store, TENANT) == good.version
    assert [d["id"] for d in version_docs(store, TENANT)] == [good.version]
    assert runtime.backends.artifacts.list(TENANT) == blobs_before  # no artifact either
    after = _answer(runtime, "u3")
    assert after["modelVersion"] == good.version and after["items"] == before["items"]


def test_a_first_model_worse_than_popularity_is_not_published(runtime: Runtime) -> None:
    result = retrain_tenant(runtime, TENANT, clustered(), trainer=least_popular_trainer())
    assert result.status == "rejected"
    assert result.gate is not None and result.gate.baseline_name == "popularity"
    assert active_version_id(runtime.backends.store, TENANT) is None
    assert client_for(runtime).get(f"/api/recommendations/u1?tenant={TENANT}").status_code == 404


def test_tolerance_lets_a_slightly_worse_model_through(runtime: Runtime) -> None:
    first = retrain_tenant(runtime, TENANT, clustered(), trainer=ease_trainer(reg_scale=4.0))
    assert first.status == "published"
    strict = RetrainConfig(gate_tolerance=0.0, window_days=None)
    loose = RetrainConfig(gate_tolerance=0.9, window_days=None)
    from training.popularity import train_popularity

    def worse(d):  # popularity: clearly worse than EASE here, but far from useless
        return train_popularity(d, 100)

    refused = retrain_tenant(runtime, TENANT, clustered(), trainer=worse, config=strict)
    assert refused.status == "rejected", refused.message
    allowed = retrain_tenant(runtime, TENANT, clustered(), trainer=worse, config=loose)
    assert allowed.status == "published", allowed.message
    assert allowed.gate is not None and allowed.gate.candidate < allowed.gate.baseline


def test_only_the_window_is_trained_on(runtime: Runtime) -> None:
    data = clustered()
    end = int(data.timestamps.max())
    in_window = int((data.timestamps >= end - 2 * 86400).sum())
    assert 0 < in_window < len(data)
    result = retrain_tenant(runtime, TENANT, data, trainer=ease_trainer(),
                            config=RetrainConfig(window_days=2))
    assert result.published is not None, result.message
    assert result.published.manifest["rows"]["interactions"] == in_window
    assert result.published.manifest["data"]["input_rows"] == len(data)


def test_the_active_version_is_scored_on_interactions_newer_than_its_data(
    runtime: Runtime,
) -> None:
    from training.retrain import compact

    full = clustered(per_user=11)
    cutoff = int(full.timestamps.min()) + 8 * 100_000  # the first 8 interactions of each user
    first = retrain_tenant(runtime, TENANT, compact(full.subset(full.timestamps < cutoff)),
                           trainer=ease_trainer())
    assert first.status == "published", first.message
    second = retrain_tenant(runtime, TENANT, full, trainer=ease_trainer())
    assert second.gate is not None
    expected = f"active {first.version} on interactions newer than its data"
    assert second.gate.baseline_name == expected
    assert second.status == "published", second.message
    assert active_version_id(runtime.backends.store, TENANT) == second.version


def test_a_tracking_failure_never_logs_the_credentials_in_the_tracking_uri(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = runtime.settings.model_copy(
        update={"mlflow_tracking_uri": "http://svc:S3cr3tT0ken@127.0.0.1:9/"})
    tracked = runtime_on(settings, runtime.backends)
    with caplog.at_level("WARNING", logger="training.retrain"):
        result = retrain_tenant(tracked, "shop", clustered(seed=0), trainer=ease_trainer(),
                                config=RetrainConfig(window_days=None, gate_tolerance=0.5))
    assert result.status == "published" and result.mlflow_run_id is None
    logged = caplog.text
    assert "could not record the run in MLflow" in logged and "127.0.0.1:9" in logged
    assert "S3cr3tT0ken" not in logged and "svc:" not in logged


def test_the_gate_holds_out_pairs_so_repeated_pairs_do_not_blind_it(runtime: Runtime) -> None:
    """Split by row, the latest rows held out were purchases of items viewed earlier, in the
    train part: no model could score them, and the gate compared zeros."""
    from tests.training.test_repeated_pairs import viewed_then_bought

    bought_weeks_later = viewed_then_bought(clustered(n_users=120, seed=3), later=90 * 86400)
    result = retrain_tenant(runtime, "shop", bought_weeks_later, ease_trainer(),
                            RetrainConfig(window_days=None, gate_tolerance=0.5))
    assert result.gate is not None and result.gate.candidate_metrics["ndcg@10"] > 0.2
