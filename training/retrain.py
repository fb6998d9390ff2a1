"""The retrain pipeline every entry point runs (timer, CLI, Databricks job).

read a window of interactions -> clean -> train on a temporal split -> evaluate on the holdout
-> quality gate against the active version on that same holdout (a first model must do at least
as well as popularity) -> refit on the whole window -> stage the artifact -> record the run in
MLflow -> fill Cosmos DB and Redis under the new version -> switch -> expire old versions.

Runs for one tenant never overlap (a lease in the `models` container); an interrupted fill is
finished by the next run before it trains anything new.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shared import forgotten, lease, telemetry
from shared.feedback.process import SKEW_SECONDS
from shared.ids import ID_RULE
from shared.model_registry import ModelVersion, active_version_id
from shared.runtime import Runtime
from shared.settings import ConfigurationError, Settings
from shared.stores.artifacts import ArtifactNotFound
from shared.stores.factory import Backends
from training.evaluate import evaluate_lists
from training.interactions import DataError, Interactions
from training.model import TrainedModel
from training.popularity import train_popularity
from training.publish import (
    ActiveChanged,
    FillOptions,
    FillStats,
    activate,
    active_pointer,
    expire_old_versions,
    fill,
    load_model,
    read_manifest,
    resume_pending,
    stage,
)
from training.splits import temporal_split

log = logging.getLogger(__name__)

Trainer = Callable[[Interactions], TrainedModel]
LEASE_NAME = "retrain"
GATE_METRIC = "ndcg@10"


class GateFailed(DataError):
    """The new model did worse than the version it would replace; nothing was published."""


def pinned_versions(settings: Settings) -> frozenset[str]:
    """The model versions experiment variants serve (`RECO_EXPERIMENTS`): expiry keeps them."""
    from shared.serving.experiments import Experiments

    try:
        experiments = Experiments.parse(settings.experiments).experiments
    except ValueError as exc:
        raise ConfigurationError.of(exc) from None
    return frozenset(v.model_version for e in experiments for v in e.variants if v.model_version)


@dataclass(frozen=True)
class RetrainConfig:
    window_days: int | None = 180
    gate_tolerance: float = 0.02  # relative drop of the gate metric allowed against the active
    tuning_seconds: float = 60.0
    n_candidates: int = 100
    k: int = 10
    holdout_fraction: float = 0.2
    refit_on_all: bool = True  # publish a model fitted on the whole window, not just train
    fill: FillOptions = field(default_factory=FillOptions)

    @staticmethod
    def from_settings(settings: Settings) -> RetrainConfig:
        return RetrainConfig(
            window_days=settings.retrain_window_days,
            gate_tolerance=settings.retrain_gate_tolerance,
            tuning_seconds=settings.retrain_tuning_seconds,
            n_candidates=settings.candidates_per_user,
            fill=FillOptions(
                chunk_users=settings.fill_chunk_users,
                store_concurrency=settings.fill_store_concurrency,
                cache_ttl_seconds=settings.cache_ttl_seconds,
                pinned=pinned_versions(settings),
            ),
        )


@dataclass
class GateResult:
    passed: bool
    metric: str
    candidate: float
    baseline: float
    baseline_name: str  # "active <version>" or "popularity"
    threshold: float
    reason: str
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RetrainResult:
    tenant: str
    status: str  # published | rejected | resumed | skipped | no_data | handed_off | failed
    message: str
    version: str | None = None
    previous: str | None = None
    gate: GateResult | None = None
    fill: FillStats | None = None
    expired: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None
    published: ModelVersion | None = None


# ---------------------------------------------------------------------------------------------
# Data


def compact(data: Interactions) -> Interactions:
    """Drops users and items without rows (windowing and cleaning keep the vocabularies)."""
    return Interactions.from_columns(
        data.user_ids[data.users], data.item_ids[data.items], data.weights, data.timestamps,
        source=data.source,
    )


def without_deleted_users(data: Interactions, tenant: str, records: dict[str, float]
                          ) -> tuple[Interactions, int]:
    """Drops the rows of users deleted on request that were logged before their deletion
    (`shared/forgotten.py`: Capture files and exports outlive it); returns how many went.
    Device clocks may run ahead by the skew the feedback schema allows, so rows stamped up to
    that much after the deletion go too, as the feedback processor drops them."""
    if not records or not len(data):
        return data, 0
    at = np.array([records.get(forgotten.user_digest(tenant, str(u)), -math.inf)
                   for u in data.user_ids.tolist()], dtype=np.float64) + SKEW_SECONDS
    drop = data.timestamps <= at[data.users]
    if not drop.any():
        return data, 0
    log.info("tenant %s: dropped %d rows of users deleted on request", tenant, int(drop.sum()))
    return data.subset(~drop), int(drop.sum())


def prepare(data: Interactions, window_days: int | None, now: float | None = None
            ) -> tuple[Interactions, dict[str, Any]]:
    """The window's rows, cleaned; returns the data and a report of what was dropped."""
    report: dict[str, Any] = {"input_rows": len(data)}
    current = data
    if window_days is not None and len(data) and int(data.timestamps.max()) > 0:
        # The window ends at the latest interaction (for an event log, about now; for a file,
        # its own end), so historic files train on their last `window_days` too.
        end = float(now if now is not None else data.timestamps.max())
        start = end - window_days * 86400
        keep = data.timestamps >= start
        report["window"] = {
            "start": datetime.fromtimestamp(start, UTC).isoformat(),
            "end": datetime.fromtimestamp(end, UTC).isoformat(),
        }
        if not keep.all():
            if not keep.any():
                raise DataError(f"no interactions in the last {window_days} days")
            current = current.subset(keep)
    try:
        from training.cleaning import clean
    except ImportError:  # cleaning is optional: without it the window is used as is
        clean = None  # type: ignore[assignment]
    if clean is not None:
        current, cleaning = clean(current)
        report["cleaning"] = {
            "invalid_id_rows": cleaning.invalid_id_rows, "duplicates": cleaning.duplicates,
            "burst_rows": cleaning.burst_rows, "sparse_rows": cleaning.sparse_rows,
            "output_rows": cleaning.output_rows,
        }
        if cleaning.invalid_id_rows:
            log.warning("dropped %d rows of %d user ids and %d item ids the API refuses (%s)",
                        cleaning.invalid_id_rows, cleaning.invalid_users, cleaning.invalid_items,
                        ID_RULE)
    if len(current) == 0:
        raise DataError("no interactions left after cleaning")
    current = compact(current)
    report["rows"] = len(current)
    return current, report


def rows_of(data: Interactions) -> dict[str, int]:
    return {"interactions": len(data), "users": data.n_users, "items": data.n_items}


# ---------------------------------------------------------------------------------------------
# Evaluation and the gate


def _lists_in(vocab: Interactions, model: TrainedModel, users: npt.NDArray[np.int64],
              exclude_from: Interactions, k: int) -> npt.NDArray[np.int32]:
    """The model's lists for `users` (codes of vocab), as vocab item codes, seen removed, top-k.

    Users the model does not know get its popular list, as serving would answer them.
    """
    item_map = {str(i): c for c, i in enumerate(vocab.item_ids.tolist())}
    to_vocab = np.array(
        [item_map.get(str(i), -1) for i in model.item_ids.tolist()] + [-1], dtype=np.int64
    )
    model_users = {str(u): c for c, u in enumerate(model.user_ids.tolist())}
    popular = np.argsort(-model.popularity, kind="stable")[: max(k * 10, 100)].astype(np.int64)
    seen = exclude_from.matrix(binary=True)
    out = np.full((users.size, k), -1, dtype=np.int32)
    for row, u in enumerate(users.tolist()):
        code = model_users.get(str(vocab.user_ids[u]))
        cand = popular if code is None else model.top_items[code].astype(np.int64)
        mapped = to_vocab[np.where(cand >= 0, cand, to_vocab.size - 1)]
        seen_row = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        mapped = mapped[(mapped >= 0) & ~np.isin(mapped, seen_row)][:k]
        out[row, : mapped.size] = mapped
    return out


def _evaluate(model: TrainedModel, train: Interactions, test: Interactions,
              users: npt.NDArray[np.int64], k: int) -> dict[str, float]:
    recs = np.full((test.n_users, k), -1, dtype=np.int32)
    recs[users] = _lists_in(test, model, users, train, k)
    return evaluate_lists(recs, test, k, train=train)


@dataclass(frozen=True)
class ActiveVersion:
    """The version a candidate would replace: its lists and its manifest."""

    version: str
    model: TrainedModel
    manifest: dict[str, Any]


MIN_GATE_USERS = 10  # fewer users with new interactions than this: compare recorded scores


def _compare(cand: float, base: float, tolerance: float) -> tuple[bool, float]:
    threshold = base * (1.0 - tolerance)
    return cand >= threshold - 1e-12, threshold


def quality_gate(candidate: TrainedModel, train: Interactions, test: Interactions,
                 active: ActiveVersion | None, tolerance: float, k: int = 10) -> GateResult:
    """Candidate vs the active version (or popularity for a first model) on one holdout.

    The active version's stored lists exclude what it saw in training, so it is scored on the
    holdout interactions that happened after its data ended: the same rows for both models.
    When too few users have such rows (e.g. retraining on the same data), the candidate's
    holdout score is compared with the score the active version recorded on its own holdout.
    """
    metric = f"ndcg@{k}"
    users = np.unique(test.users).astype(np.int64)
    if users.size == 0:
        passed = active is None
        reason = ("no holdout to evaluate on (every user has too few interactions); "
                  + ("a first model is published unchecked" if passed
                     else "the active version stays"))
        return GateResult(passed, metric, 0.0, 0.0, "none", 0.0, reason)
    cand_metrics = _evaluate(candidate, train, test, users, k)
    cand = cand_metrics[metric]
    name, base_metrics, n_users = "popularity", {}, int(users.size)
    allowed_drop = 0.0  # a first model: at least as good as popularity, no tolerance
    if active is not None:
        end = int(active.manifest.get("data_end") or 0)
        future = test.subset(test.timestamps > end) if end else test.subset(test.users < 0)
        f_users = np.unique(future.users).astype(np.int64)
        recorded = (active.manifest.get("metrics") or {}).get(f"holdout_{metric}")
        allowed_drop = tolerance
        if f_users.size >= MIN_GATE_USERS:
            cand_metrics = _evaluate(candidate, train, future, f_users, k)
            cand = cand_metrics[metric]
            base_metrics = _evaluate(active.model, train, future, f_users, k)
            name = f"active {active.version} on interactions newer than its data"
            n_users = int(f_users.size)
        elif recorded is not None:
            base_metrics = {metric: float(recorded)}
            name = f"active {active.version} as recorded on its own holdout"
        else:
            allowed_drop = 0.0
            name = f"popularity (active {active.version} has no comparable score)"
    if not base_metrics:
        base_metrics = _evaluate(train_popularity(train, k), train, test, users, k)
    base = base_metrics[metric]
    passed, threshold = _compare(cand, base, allowed_drop)
    verdict = "passes" if passed else "fails"
    reason = (f"{metric} {cand:.4f} on {n_users} holdout users {verdict} the gate: "
              f"{name} scores {base:.4f}, threshold {threshold:.4f}")
    return GateResult(passed, metric, cand, base, name, threshold, reason, cand_metrics,
                      base_metrics)


def _active_model(backends: Backends, tenant: str) -> ActiveVersion | None:
    pointer = active_pointer(backends.store, tenant)
    if pointer is None:
        return None
    version = str(pointer["version"])
    try:
        model = load_model(backends.artifacts, tenant, version)
    except ArtifactNotFound:
        log.warning("tenant %s: active version %s has no artifact; gating on popularity",
                    tenant, version)
        return None
    return ActiveVersion(version, model,
                         read_manifest(backends.artifacts, tenant, version) or {})


# ---------------------------------------------------------------------------------------------
# MLflow


def record_run(settings: Settings, tenant: str, result: RetrainResult, model: TrainedModel,
               manifest: dict[str, Any] | None, evaluation: dict[str, Any],
               backends: Backends) -> str | None:
    """One MLflow run per retrain: params, holdout metrics, the re-ranker ONNX, the artifact's
    manifest and evaluation, and (when published) a registered model version.

    Tracking is a record, not part of serving: if it fails, the failure is logged.
    """
    import os
    import tempfile

    try:
        uri = settings.mlflow_uri
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # local default only
        import mlflow

        # Only the client API: the fluent one sets MLFLOW_TRACKING_URI in os.environ, which is
        # also our setting's name, and would leak this run's store into the next Settings().
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        name = f"recommender-{tenant}"
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name)
        run = client.create_run(experiment_id, run_name=result.version or "rejected")
        run_id = run.info.run_id
        try:
            params = {"generator": model.generator, "tenant": tenant,
                      **{k: json.dumps(v, default=str)[:500] for k, v in model.parameters.items()}}
            for key, param in params.items():
                client.log_param(run_id, key, param)
            gate = result.gate
            if gate is not None:
                for key, metric in gate.candidate_metrics.items():
                    client.log_metric(run_id, f"holdout_{key.replace('@', '_at_')}", metric)
                client.log_metric(run_id, "gate_baseline", gate.baseline)
                client.log_metric(run_id, "gate_passed", float(gate.passed))
            for key, tag in {"status": result.status, "model_version": result.version or "",
                             "gate": gate.reason if gate else ""}.items():
                client.set_tag(run_id, key, tag)
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                (folder / "evaluation.json").write_text(
                    json.dumps(evaluation, indent=2, default=str))
                files = [folder / "evaluation.json"]
                if manifest is not None:
                    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
                    files.append(folder / "manifest.json")
                if model.reranker_onnx is not None:
                    (folder / "reranker.onnx").write_bytes(model.reranker_onnx)
                    files.append(folder / "reranker.onnx")
                for f in files:
                    client.log_artifact(run_id, str(f), artifact_path="model")
            if result.version is not None:
                if not client.search_registered_models(filter_string=f"name='{name}'"):
                    client.create_registered_model(name)
                client.create_model_version(
                    name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
                    tags={"version": result.version, "tenant": tenant,
                          "artifact": f"{backends.artifacts.name}:{tenant}/{result.version}"},
                )
        finally:
            client.set_terminated(run_id)
        return str(run_id)
    except Exception as exc:
        log.warning("tenant %s: could not record the run in MLflow: %s", tenant,
                    _without_credentials(str(exc)))
        return None


def _without_credentials(text: str) -> str:
    """The text with the user and password of any URL in it masked: a tracking URI may carry
    them, and MLflow's errors quote the URI."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", text)


# ---------------------------------------------------------------------------------------------
# The pipeline


def run_pipeline(runtime: Runtime, data: Interactions, tenant: str,
                 trainer: Trainer | None = None, config: RetrainConfig | None = None,
                 before_switch: Callable[[], None] | None = None) -> RetrainResult:
    """Gate, then publish: the steps after the data is read. No lease here (callers hold it
    and pass `before_switch` to check it is still theirs before the switch)."""
    cfg = config or RetrainConfig.from_settings(runtime.settings)
    backends = runtime.backends
    if trainer is None:
        from training.train import train_default

        def trainer(d: Interactions) -> TrainedModel:
            return train_default(d, cfg.n_candidates, cfg.tuning_seconds)

    t0 = time.perf_counter()
    as_of = time.time()  # deletions up to now are applied here; the fill skips later ones
    data, deleted_rows = without_deleted_users(data, tenant,
                                               forgotten.forgotten(backends.store, tenant))
    data, prep = prepare(data, cfg.window_days)
    prep["deleted_user_rows"] = deleted_rows
    # by pair: a pair on both sides (a view then a purchase) is a hit no model can score
    train, test = temporal_split(data.one_row_per_pair(), cfg.holdout_fraction)
    gate_model = trainer(train)  # train keeps the holdout's codes: evaluation maps by id anyway
    replaces = active_version_id(backends.store, tenant)
    active = _active_model(backends, tenant)
    gate = quality_gate(gate_model, train, test, active, cfg.gate_tolerance, cfg.k)
    log.info("tenant %s: %s", tenant, gate.reason)
    run_metrics = {**{f"holdout_{k}": v for k, v in gate.candidate_metrics.items()},
                   "gate_passed": float(gate.passed)}
    evaluation = {"gate": gate.__dict__, "data": prep, "rows": rows_of(data)}
    if not gate.passed:
        current = active.version if active else None
        result = RetrainResult(
            tenant, "rejected",
            f"tenant '{tenant}': the new model was not published ({gate.reason}); "
            f"version {current} stays active",
            gate=gate, version=None, previous=current,
        )
        telemetry.training_run(tenant, "rejected", run_metrics)
        result.mlflow_run_id = record_run(runtime.settings, tenant, result, gate_model, None,
                                          evaluation, backends)
        return result
    model = trainer(data) if cfg.refit_on_all else gate_model
    model.metrics = {f"holdout_{k}": v for k, v in gate.candidate_metrics.items()}
    extra = {"gate": {k: v for k, v in gate.__dict__.items() if not k.endswith("metrics")},
             # the version it replaces, which the gate judged it against: the switch (and the
             # resume of an interrupted publish) happens only while that one is still active
             "replaces": replaces,
             "data": prep, "data_end": int(data.timestamps.max()), "deletions_as_of": as_of,
             "train_seconds": round(time.perf_counter() - t0, 3)}
    model.extra_files.setdefault("evaluation.json", json.dumps(evaluation, default=str).encode())
    staged = stage(backends, model, tenant, rows_of(data), manifest_extra=extra)
    telemetry.training_run(tenant, staged.version, run_metrics)
    result = RetrainResult(tenant, "published", "", version=staged.version, gate=gate)
    manifest = read_manifest(backends.artifacts, tenant, staged.version)
    result.mlflow_run_id = record_run(runtime.settings, tenant, result, model, manifest,
                                      evaluation, backends)
    stats = fill(backends, model, tenant, staged.version, options=cfg.fill)
    published = activate(backends, staged, stats, cfg.fill, before_switch)
    result.previous, result.fill, result.expired = published.previous, stats, published.expired
    result.published = published.version
    result.message = (
        f"tenant '{tenant}': published version {staged.version} for {data.n_users} users and "
        f"{data.n_items} items ({gate.reason}); previous version {published.previous}"
        + (f", expired {', '.join(published.expired)}" if published.expired else "")
    )
    log.info(result.message)
    return result


def load_interactions(runtime: Runtime, tenant: str, source: Path | None = None,
                      window_days: int | None = None) -> Interactions | None:
    """The tenant's interactions: logged events (no source), Capture Avro files, or a CSV.

    Events and Capture files are read from the start of the window only; None when empty.
    """
    since = (None if window_days is None
             else datetime.fromtimestamp(time.time() - window_days * 86400, UTC))
    if source is None:
        from training.events_source import read_events

        return read_events(runtime.backends.store, tenant, since)
    if source.suffix == ".avro" or (source.is_dir() and any(source.rglob("*.avro"))):
        from training.capture import read_capture

        files = sorted(source.rglob("*.avro")) if source.is_dir() else [source]
        data, stats = read_capture(files, tenant, since, runtime.settings.default_tenant)
        log.info("tenant %s: capture files read: %s", tenant, stats)
        return data
    from training.interactions import read_csv

    return read_csv(source / "u.data" if source.is_dir() else source)


def _expire_left_over(backends: Backends, tenant: str, options: FillOptions) -> None:
    """Retries the expiry a publish could not finish, whatever this run goes on to do."""
    pointer = active_pointer(backends.store, tenant)
    if pointer is not None:
        keep = {str(pointer["version"]), pointer.get("previous")}
        expire_old_versions(backends, tenant, keep=keep, options=options)


def retrain_tenant(runtime: Runtime, tenant: str, data: Interactions | None = None,
                   trainer: Trainer | None = None, config: RetrainConfig | None = None,
                   max_rows: int | None = None) -> RetrainResult:
    """One tenant under its lease: finish an interrupted publish, else read, gate and publish.

    `data` None reads the tenant's logged feedback events. Above `max_rows` the run is handed
    to the Databricks job when one is configured (DATABRICKS_JOB_ID).
    """
    settings = runtime.settings
    cfg = config or RetrainConfig.from_settings(settings)
    try:
        with lease.held(runtime.backends.store, LEASE_NAME, tenant,
                        settings.retrain_lease_seconds) as held:
            # A lease that expired while this run went on (renewals failed, the process was
            # paused) may be another run's now: that run finishes the publish, not this one.
            still_held = partial(lease.check, runtime.backends.store, held)
            resumed = resume_pending(runtime.backends, tenant, cfg.fill, still_held)
            if resumed is not None:
                stats = resumed.fill
                finished = RetrainResult(
                    tenant, "resumed",
                    f"tenant '{tenant}': finished the interrupted publish of version "
                    f"{resumed.version.version} ({stats.chunks_skipped} of {stats.chunks} chunks "
                    f"were already written) and switched to it",
                    version=resumed.version.version, previous=resumed.previous, fill=stats,
                    expired=resumed.expired, published=resumed.version,
                )
                if data is None:  # the timer: the next run trains on the events
                    return finished
                log.info("%s; now training the data given", finished.message)
            else:
                _expire_left_over(runtime.backends, tenant, cfg.fill)
            if data is None and max_rows is not None:
                handed = _maybe_hand_off(runtime, tenant, max_rows, estimate_only=True)
                if handed is not None:
                    return handed
            if data is None:
                data = load_interactions(runtime, tenant, None, cfg.window_days)
            if data is None:
                return RetrainResult(tenant, "no_data",
                                     f"tenant '{tenant}': no feedback events yet; nothing trained")
            if max_rows is not None and len(data) > max_rows:
                handed = _maybe_hand_off(runtime, tenant, max_rows, rows=len(data))
                if handed is not None:
                    return handed
            result = run_pipeline(runtime, data, tenant, trainer, cfg, still_held)
            if resumed is not None and result.status != "published":  # say what did change
                result.message = f"{finished.message}; then {result.message}"
            return result
    except lease.LeaseHeld as exc:
        return RetrainResult(tenant, "skipped",
                             f"tenant '{tenant}': another retrain is running ({exc}); skipped")
    except ActiveChanged as exc:  # a rollback during the run: it stands
        return RetrainResult(tenant, "rejected", f"tenant '{tenant}': {exc}")
    except lease.LeaseLost as exc:
        return RetrainResult(tenant, "failed",
                             f"tenant '{tenant}': nothing was switched: the {exc}, which "
                             "finishes any version this run filled")


def _maybe_hand_off(runtime: Runtime, tenant: str, max_rows: int, rows: int | None = None,
                    estimate_only: bool = False) -> RetrainResult | None:
    """Submits the Databricks job when the data is too large for one Functions instance.

    Without a row count yet, the active version's manifest gives an estimate, so a large tenant
    is handed off without reading its events here first.
    """
    settings = runtime.settings
    if rows is None:
        pointer = active_pointer(runtime.backends.store, tenant)
        manifest = (None if pointer is None else
                    read_manifest(runtime.backends.artifacts, tenant, str(pointer["version"])))
        rows = int(((manifest or {}).get("rows") or {}).get("interactions", 0))
    if rows <= max_rows:
        return None
    if settings.databricks_job_id is None:
        if estimate_only:
            return None
        log.warning("tenant %s: %d interactions exceed RETRAIN_MAX_FUNCTION_ROWS=%d and no "
                    "DATABRICKS_JOB_ID is set; training here", tenant, rows, max_rows)
        return None
    from training.databricks.submit import submit_retrain

    run_id = submit_retrain(settings.databricks_job_id, tenant, settings.retrain_window_days)
    return RetrainResult(
        tenant, "handed_off",
        f"tenant '{tenant}': {rows} interactions exceed {max_rows}; submitted Databricks job "
        f"{settings.databricks_job_id} (run {run_id})",
    )


def stalest_first(runtime: Runtime, tenants: list[str]) -> list[str]:
    """Tenants without a model first, then by the age of their active model, oldest first
    (ties keep the configured order): when a run is cut short by the function timeout, the
    next one starts with the tenants this one did not reach."""

    def age(tenant: str) -> float:
        try:
            model = runtime.active.get(tenant)
        except Exception:  # unreadable now: retrain_tenant meets the error and reports it
            return math.inf
        return math.inf if model is None else model.age_seconds

    return sorted(tenants, key=age, reverse=True)  # sorted() stays stable with reverse


def run_scheduled(runtime: Runtime) -> list[RetrainResult]:
    """The timer's job: every configured tenant, one after the other, stalest first; one
    failure does not stop the others."""
    results = []
    for tenant in stalest_first(runtime, runtime.settings.retrain_tenant_list):
        try:
            result = retrain_tenant(runtime, tenant,
                                    max_rows=runtime.settings.retrain_max_function_rows)
        except Exception as exc:
            log.exception("tenant %s: retrain failed", tenant)
            result = RetrainResult(tenant, "failed", f"tenant '{tenant}': retrain failed: {exc}")
        log.info(result.message)
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------
# Entry points kept for callers of the first version


def train_and_publish(runtime: Runtime, data: Interactions, tenant: str,
                      item_metadata: dict[str, dict[str, Any]] | None = None) -> ModelVersion:
    """Gate and publish `data` for `tenant` under the tenant's lease; GateFailed if rejected.

    Item metadata (titles, categories) goes into the artifact for serving's category filters,
    diversity and the re-ranker's category features.
    """
    trainer: Trainer | None = None
    if item_metadata:
        from training.datasets import category_matrix
        from training.train import train_default

        cfg = RetrainConfig.from_settings(runtime.settings)

        def trainer(d: Interactions) -> TrainedModel:
            categories = category_matrix(d.item_ids, item_metadata)[0]
            return train_default(d, cfg.n_candidates, cfg.tuning_seconds, item_metadata,
                                 categories)

    result = retrain_tenant(runtime, tenant, data, trainer=trainer)
    if result.status in ("skipped", "failed"):
        raise DataError(result.message)
    if result.published is None:
        raise GateFailed(result.message)
    return result.published

