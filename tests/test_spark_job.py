"""The Databricks job's code in Spark local mode: events in, a served version out.

pyspark `local[2]` (SPARK_LOCAL_IP=127.0.0.1), small data; the job publishes through the same
pipeline into real Redis, the Cosmos-protocol server and Azurite, and the HTTP API answers
from the version it produced.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.model_registry import active_version_id
from shared.stores.factory import build_backends
from tests.conftest import azure_settings
from tests.helpers import client_for, runtime_on
from tests.retrain_data import clustered, lists_of, with_rows

pyspark = pytest.importorskip("pyspark")

TENANT = "big"


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]").appName("spark-job-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")  # as the job sets it
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _write_events(folder: Path) -> dict[str, set[str]]:
    """Feedback events as JSON lines (what the events export / Capture bodies hold)."""
    data = clustered(n_users=60)
    seen: dict[str, set[str]] = {}
    folder.mkdir()
    first = ""
    with (folder / "part-0.json").open("w") as fh:
        for n, (u, i, t) in enumerate(zip(data.user_ids[data.users], data.item_ids[data.items],
                                          data.timestamps, strict=True)):
            seen.setdefault(str(u), set()).add(str(i))
            line = json.dumps({
                "eventId": f"e{n}", "tenant": TENANT, "userId": str(u), "itemId": str(i),
                "type": "purchase",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t))),
            })
            first = first or line
            fh.write(line + "\n")
        # another tenant's event and a replayed one must not count
        fh.write(json.dumps({"eventId": "x1", "tenant": "other", "userId": "u0", "itemId": "zz",
                             "type": "purchase", "timestamp": "2023-11-15T00:00:00Z"}) + "\n")
        fh.write(first + "\n")
    return seen


def test_events_count_once_per_user_and_event_id_within_the_tenant(spark, tmp_path: Path
                                                                    ) -> None:
    """Other users and other tenants may use the same event ids; rows without an id all count;
    a replayed event counts once."""
    from training.spark_job import read_interactions

    def event(eid: str | None, user: str, item: str, tenant: str = TENANT) -> str:
        body = {"tenant": tenant, "userId": user, "itemId": item, "type": "view",
                "timestamp": "2023-11-15T00:00:00Z"}
        return json.dumps(body if eid is None else {"eventId": eid, **body})

    (tmp_path / "events.json").write_text("\n".join([
        event("1", "alice", "a"), event("1", "bob", "b"), event("1", "alice", "a"),  # replay
        event("1", "alice", "z", tenant="other"), event("2", "carol", "c", tenant="other"),
        event("2", "carol", "c"), event(None, "dan", "d"), event(None, "dan", "e"),
    ]) + "\n")
    df = read_interactions(spark, str(tmp_path / "events.json"), "json", TENANT, None)
    rows = sorted((r.user_id, r.item_id) for r in df.collect())
    assert rows == [("alice", "a"), ("bob", "b"), ("carol", "c"), ("dan", "d"), ("dan", "e")]


def test_spark_job_publishes_a_version_that_serving_answers_from(
    spark, redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
    tmp_path: Path,
) -> None:
    from training.spark_job import build_parser, run_job

    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_DATA_DIR=tmp_path / "data")
    runtime = runtime_on(settings, build_backends(settings))
    seen = _write_events(tmp_path / "events")
    args = build_parser().parse_args([
        "--tenant", TENANT, "--events", str(tmp_path / "events"), "--format", "json",
        "--rank", "8", "--max-iter", "8", "--reg", "0.1", "--alpha", "20",
        "--n-candidates", "30", "--window-days", "3650", "--blocks", "2",
    ])

    result = run_job(spark, runtime, args)

    assert result.status == "published", result.message
    assert result.published is not None
    manifest = result.published.manifest
    assert manifest["generator"] == "spark-als"
    assert manifest["rows"]["users"] == 60 and manifest["rows"]["interactions"] == 600
    assert active_version_id(runtime.backends.store, TENANT) == result.version
    names = {p.rsplit("/", 1)[-1] for p in runtime.backends.artifacts.list(
        f"{TENANT}/{result.version}")}
    assert {"manifest.json", "candidates.npz", "popular.json", "item_stats.npz"} <= names
    client = client_for(runtime)
    for user in ("u0", "u17", "u59"):
        body = client.get(f"/api/recommendations/{user}?k=10&tenant={TENANT}").json()
        assert body["modelVersion"] == result.version and body["source"] == "cache"
        items = [i["itemId"] for i in body["items"]]
        assert len(items) == 10 and not set(items) & seen[user]  # seen items removed
        scores = [i["score"] for i in body["items"]]
        assert scores == sorted(scores, reverse=True)


def test_the_driver_reads_interactions_as_columns_and_refuses_an_empty_window(spark) -> None:
    from training.interactions import DataError
    from training.spark_job import to_interactions

    df = spark.createDataFrame(
        [("u1", "a", 4.0, 100), ("u2", "a", 1.0, 200), ("u1", "b", 2.5, 300)],
        "user_id string, item_id string, weight float, ts long",
    )
    data = to_interactions(df, "three rows")
    assert list(data.user_ids) == ["u1", "u2"] and list(data.item_ids) == ["a", "b"]
    rows = sorted(zip(data.user_ids[data.users].tolist(), data.item_ids[data.items].tolist(),
                      data.weights.tolist(), data.timestamps.tolist(), strict=True))
    assert rows == [("u1", "a", 4.0, 100), ("u1", "b", 2.5, 300), ("u2", "a", 1.0, 200)]
    with pytest.raises(DataError, match="no interactions found in an empty window"):
        to_interactions(df.where("ts > 1000"), "an empty window")


def test_events_the_timer_path_would_skip_are_skipped_not_fatal(spark, tmp_path: Path) -> None:
    """Capture files hold whatever producers sent: a rating that is not a finite number in the
    schema's range, or a timestamp that is not a time, drops that event (as the timer path's
    builder does) instead of failing the job (Spark 4 casts are ANSI: a bad cast raises)."""
    from training.spark_job import read_interactions

    def event(eid: str, item: str, kind: str = "rating", value: object = None,
              timestamp: object = "2023-11-15T00:00:00Z") -> str:
        return json.dumps({"eventId": eid, "tenant": TENANT, "userId": "u1", "itemId": item,
                           "type": kind, "value": value, "timestamp": timestamp})

    (tmp_path / "events.json").write_text("\n".join([
        event("1", "good", value="4"),
        event("2", "nan", value="NaN"),
        event("3", "text", value="abc"),
        event("4", "inf", value="1e999"),
        event("5", "huge", value="2e6"),
        event("6", "no-time", value="3", timestamp="not a time"),
        event("7", "epoch", value="5", timestamp="1700000000"),
        event("8", "unrated", value=None),
        event("9", "viewed", kind="view", value="abc"),  # a view's value is not read
    ]) + "\n")
    df = read_interactions(spark, str(tmp_path / "events.json"), "json", TENANT, None)
    rows = sorted((r.item_id, r.weight, r.ts) for r in df.collect())
    assert rows == [("epoch", 5.0, 1700000000), ("good", 4.0, 1700006400),
                    ("unrated", 1.0, 1700006400), ("viewed", 1.0, 1700006400)]


def test_an_interactions_file_with_a_non_finite_weight_is_refused_with_a_sentence(
    spark, tmp_path: Path
) -> None:
    from training.interactions import DataError
    from training.spark_job import read_interactions, to_interactions

    (tmp_path / "rows.csv").write_text("user_id,item_id,weight\nu1,a,1\nu1,b,NaN\n")
    df = read_interactions(spark, str(tmp_path / "rows.csv"), "csv", TENANT, None)
    with pytest.raises(DataError, match="column 'weight' has nan, but weights must be finite"):
        to_interactions(df, "rows.csv")


def test_whole_float_ids_in_an_interactions_file_read_as_whole_numbers(
    spark, tmp_path: Path
) -> None:
    """Spark's cast made a double user id "1.0", matching no user of the app's events."""
    import pandas as pd

    from training.interactions import DataError
    from training.spark_job import read_interactions

    pd.DataFrame({"user_id": [1.0, 2.0], "item_id": ["a", "b"]}).to_parquet(tmp_path / "w.parquet")
    df = read_interactions(spark, str(tmp_path / "w.parquet"), "parquet", TENANT, None)
    assert sorted(r.user_id for r in df.collect()) == ["1", "2"]
    pd.DataFrame({"user_id": [1.0, 2.5], "item_id": ["a", "b"]}).to_parquet(tmp_path / "f.parquet")
    with pytest.raises(DataError, match="column 'user_id' holds double values that are not whole"):
        read_interactions(spark, str(tmp_path / "f.parquet"), "parquet", TENANT, None)


def test_a_setting_the_job_cannot_use_stops_it_with_a_sentence_before_spark_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The job's settings come from the secret scope (RECO_EXPERIMENTS among them)."""
    from shared.runtime import get_runtime
    from shared.settings import get_settings
    from training.spark_job import main

    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECO_EXPERIMENTS", "[{")
    get_settings.cache_clear()
    get_runtime.cache_clear()
    try:
        code = main(["--tenant", TENANT, "--events", str(tmp_path / "events")])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        get_runtime.cache_clear()
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: configuration: RECO_EXPERIMENTS"), err


def test_a_tenant_with_a_colon_stops_the_job_with_the_tenant_rule_before_spark_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tenant "big:v1" was published under cache keys that tenant "big" deletes when it
    expires version "v1"."""
    from shared.ids import TENANT_RULE
    from training.spark_job import main

    code = main(["--tenant", "big:v1", "--events", str(tmp_path / "events")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: tenant 'big:v1' is not valid: {TENANT_RULE}\n", err


def test_a_store_the_job_cannot_reach_stops_it_with_a_sentence(
    spark, redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A Cosmos DB database that is not there (not provisioned, or the wrong name)."""
    import shared.runtime
    from training.spark_job import main

    port = int(redis_client.connection_pool.connection_kwargs["port"])
    settings = azure_settings(port, cosmos_endpoint, azurite_connection,
                              RECO_DATA_DIR=tmp_path / "data", COSMOS_CREATE_CONTAINERS=False)
    runtime = runtime_on(settings, build_backends(settings))
    monkeypatch.setattr(shared.runtime, "get_runtime", lambda: runtime)
    _write_events(tmp_path / "events")

    code = main(["--tenant", TENANT, "--events", str(tmp_path / "events"), "--format", "json"])

    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: cosmos "), err
    assert "run the job again once it is reachable" in err


def test_spark_als_learns_likes_hides_every_dislike_and_gives_dislike_only_users_popular_items(
    spark,
) -> None:
    """The Databricks trainer keeps the timer path's rule: a pair with no like left (a view,
    then a dislike) is a negative preference, never recommended back; a user with only
    dislikes gets the popular items minus them; popularity counts likes only."""
    from training.spark_job import spark_als_trainer

    base = clustered(n_users=40, seed=5)
    users = base.user_ids.tolist()
    viewed = str(base.item_ids[base.items[base.users == 1][0]])
    data = with_rows(base, [
        ("u0", "spam", -1.0), (users[1], viewed, -1.0),  # u1 viewed it, then disliked it
        ("hater", "spam", -1.0), ("hater", "i0", 0.0),
    ])
    model = spark_als_trainer(spark, rank=8, max_iter=5, n_candidates=20, blocks=2)(data)
    spam = data.item_ids.tolist().index("spam")
    assert model.popularity[spam] == 0
    assert "spam" not in lists_of(model, data, "u0", 20)
    assert viewed not in lists_of(model, data, users[1], 20)
    popular = [str(data.item_ids[i]) for i in np.argsort(-model.popularity, kind="stable")]
    assert lists_of(model, data, "hater", 20) == [i for i in popular
                                                  if i not in ("spam", "i0")][:20]
