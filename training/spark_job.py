"""The large-data retrain as a Databricks job (databricks.yml, training/databricks/job.json).

Spark reads the event log (the Cosmos `events` export or Event Hubs Capture files: Avro, Parquet,
JSON or CSV), keeps the tenant's window, and trains implicit ALS (pyspark.ml) and scores every
user with `recommendForAllUsers`, removing seen items, distributed. The candidate lists (100 per
user) are then collected to the driver, columnar through Arrow, as a TrainedModel and go
through the same pipeline as the timer: quality gate, artifact, MLflow, Cosmos/Redis fill,
switch and expiry - so versions, rollback and serving are the same whichever path produced
them. Collecting suits catalogues whose candidate lists fit the driver's memory (100 x users x
8 bytes: 1 GB per million users; `python -m bench.spark.run` measures the driver's peak).

    python training/spark_job.py --tenant T --events PATH [--format avro] [--window-days 180]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, cast

if __name__ == "__main__" and "__file__" in globals():  # run as a file: the repo root is home
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy import sparse

from shared.feedback.schema import MAX_VALUE
from training.events_source import EVENT_WEIGHTS
from training.interactions import DataError, Interactions, checked_timestamps, checked_weights
from training.model import TrainedModel
from training.popularity import popular_for_users_without_likes

log = logging.getLogger("training.spark_job")

FORMATS = ("auto", "avro", "parquet", "json", "csv", "delta")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark_job", description="Spark ALS retrain for one tenant")
    p.add_argument("--tenant", required=True)
    p.add_argument("--events", required=True, help="event log folder or file (any FORMAT)")
    p.add_argument("--format", choices=FORMATS, default="auto")
    p.add_argument("--window-days", type=int, default=180)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--reg", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--max-iter", type=int, default=15)
    p.add_argument("--n-candidates", type=int, default=100)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--blocks", type=int, default=10,
                   help="ALS user/item blocks (about the number of executor cores)")
    return p


# ---------------------------------------------------------------------------------------------
# Reading


def _format_of(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    for ext in ("avro", "parquet", "json", "csv"):
        if path.rstrip("/").endswith(f".{ext}") or f"/{ext}" in path:
            return ext
    local = Path(path)
    if local.is_dir():
        for ext in ("avro", "parquet", "json", "csv"):
            if any(local.rglob(f"*.{ext}")):
                return ext
    raise DataError(f"cannot tell the format of {path}; pass --format")


def read_interactions(spark: Any, path: str, fmt: str, tenant: str, window_days: int | None,
                      default_tenant: str = "default") -> Any:
    """DataFrame(user_id, item_id, weight, ts) for the tenant's window.

    Feedback events (userId, itemId, type, value, timestamp, tenant) are weighted as in the
    timer path, which also decides what is skipped: a rating whose value is not a finite number
    within the schema's range, an event whose timestamp is not a time. Interaction files
    (user_id, item_id[, weight][, timestamp]) are used as they are; a cell that is not a number
    is left null for `to_interactions` to refuse. Capture Avro wraps each event's JSON in its
    Body column. Casts are `try_cast`: Spark 4's ANSI casts fail the whole job on one bad cell.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    fmt = _format_of(path, fmt)
    reader = spark.read
    if fmt == "csv":
        df = reader.option("header", True).csv(path)
    elif fmt == "delta":
        df = reader.format("delta").load(path)
    else:
        df = reader.format(fmt).option("recursiveFileLookup", True).load(path)
    if "Body" in df.columns:  # Event Hubs Capture: the event JSON is the Body
        schema = T.StructType([
            T.StructField(n, T.StringType()) for n in
            ("eventId", "tenant", "userId", "itemId", "type", "value", "timestamp")
        ])
        df = df.select(F.from_json(F.col("Body").cast("string"), schema).alias("e")).select("e.*")
    if "userId" in df.columns:
        for optional in ("tenant", "value", "eventId"):  # absent from some files' schema
            if optional not in df.columns:
                df = df.withColumn(optional, F.lit(None).cast("string"))
        weights = F.create_map(*[x for k, v in EVENT_WEIGHTS.items() for x in (F.lit(k), F.lit(v))])
        # an event without a tenant is the deployment's default tenant's, as the trigger files it
        df = df.where(F.coalesce(F.col("tenant"), F.lit(default_tenant)) == tenant)
        df = df.where(F.col("type").isin(list(EVENT_WEIGHTS)))
        # A replayed event counts once. An event id is unique per user, as the store keeps
        # events (other users, or tenants, may use the same id); rows without one all count.
        identified = F.col("eventId").isNotNull()
        df = df.where(identified).dropDuplicates(["userId", "eventId"]).unionByName(
            df.where(~identified)
        )
        value = F.col("value").try_cast("double")
        usable = (F.col("type") != "rating") | F.col("value").isNull() | (
            ~F.isnan(value) & (F.abs(value) <= MAX_VALUE)  # null (not a number) is not usable
        )
        stamp = F.col("timestamp").cast("string")
        ts = F.coalesce(  # an ISO time, or unix seconds as the timer path also reads them
            F.unix_timestamp(F.try_to_timestamp(stamp)),
            stamp.try_cast("decimal(20,3)").try_cast("long"),
        )
        df = df.where(usable).select(
            F.col("userId").cast("string").alias("user_id"),
            F.col("itemId").cast("string").alias("item_id"),
            F.when(F.col("type") == "rating", F.coalesce(value, F.lit(1.0)))
            .otherwise(weights[F.col("type")]).alias("weight"),
            ts.alias("ts"),
        ).where(F.col("ts").isNotNull())
    else:
        for needed in ("user_id", "item_id"):
            if needed not in df.columns:
                raise DataError(f"{path}: column '{needed}' not found; columns are {df.columns}")
        df = df.select(
            _id_text(df, "user_id", path), _id_text(df, "item_id", path),
            (F.col("weight") if "weight" in df.columns else F.lit(1.0)).try_cast("double")
            .alias("weight"),
            (F.col("timestamp") if "timestamp" in df.columns else F.lit(0)).try_cast("long")
            .alias("ts"),
        )
    df = df.where(F.col("user_id").isNotNull() & F.col("item_id").isNotNull())
    if window_days is not None:
        end = df.agg(F.max("ts")).first()[0]
        if end is not None and end > 0:
            df = df.where(F.col("ts") >= int(end) - window_days * 86400)
    return df


def _id_text(df: Any, name: str, path: str) -> Any:
    """An id column as text. Whole floats and decimals (pandas writes integer ids as floats
    once a column had gaps) read as "1", not "1.0", as the single-machine reader and the app's
    events give them; a fraction is refused with a sentence."""
    from pyspark.sql import functions as F

    col = F.col(name)
    kind = dict(df.dtypes)[name]
    if kind not in ("float", "double") and not kind.startswith("decimal"):
        return col.cast("string").alias(name)
    if df.where(col != F.floor(col)).limit(1).count():
        raise DataError(f"{path}: column '{name}' holds {kind} values that are not whole "
                        "numbers; ids must be text or whole numbers")
    return col.cast("long").cast("string").alias(name)


def to_interactions(df: Any, source: str) -> Interactions:
    """Collects the (windowed) rows to the driver: four columns, smaller than the lists.

    Through Arrow (`toPandas`, columnar batches) rather than `collect()`, which builds one
    Python Row per interaction: several times the memory and time at millions of rows.
    A weight or timestamp that is missing or not a usable number is a DataError, as it is for
    the same file read without Spark.
    """
    frame = df.select("user_id", "item_id", "weight", "ts").toPandas()
    if frame.empty:
        raise DataError(f"no interactions found in {source}")
    return Interactions.from_columns(
        frame["user_id"].to_numpy(str), frame["item_id"].to_numpy(str),
        checked_weights(frame["weight"].to_numpy(np.float64, na_value=np.nan), "weight", source),
        checked_timestamps(frame["ts"].to_numpy(np.float64, na_value=np.nan), "timestamp",
                           source),
        source=source,
    )


# ---------------------------------------------------------------------------------------------
# Training


def spark_als_trainer(spark: Any, rank: int = 64, reg: float = 0.05, alpha: float = 10.0,
                      max_iter: int = 15, n_candidates: int = 100, seed: int = 42,
                      blocks: int = 10) -> Any:
    """A Trainer (Interactions -> TrainedModel) that fits and scores with Spark ALS."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def train(data: Interactions) -> TrainedModel:
        t0 = time.perf_counter()
        import pandas as pd

        liked = data.positive()
        likes = liked.matrix()  # repeated pairs summed: one confidence per like
        seen = data.matrix(binary=True)
        disliked = seen - seen.multiply(likes > 0)  # no like left: a negative preference
        m = sparse.csr_matrix(likes - disliked)
        m.eliminate_zeros()
        m = m.tocoo()
        ratings = spark.createDataFrame(  # from columns (Arrow), not a Python tuple per pair
            pd.DataFrame({"user": m.row.astype(np.int32), "item": m.col.astype(np.int32),
                          "rating": m.data.astype(np.float32)}),
            "user int, item int, rating float",
        )
        als = ALS(rank=rank, maxIter=max_iter, regParam=reg, alpha=alpha, implicitPrefs=True,
                  userCol="user", itemCol="item", ratingCol="rating", seed=seed,
                  coldStartStrategy="drop", numUserBlocks=blocks, numItemBlocks=blocks)
        fitted = als.fit(ratings)
        max_seen = int(np.diff(seen.indptr).max(initial=0))
        ask = min(data.n_items, n_candidates + min(max_seen, 1000))
        recs = (
            fitted.recommendForAllUsers(ask)
            .select("user", F.posexplode("recommendations").alias("pos", "rec"))
            .select("user", "pos", F.col("rec.item").alias("item"),
                    F.col("rec.rating").alias("score"))
            .join(ratings.select("user", "item"), ["user", "item"], "left_anti")  # seen removed
            .withColumn("rank", F.row_number().over(Window.partitionBy("user").orderBy("pos")))
            .where(F.col("rank") <= n_candidates)
        )
        top_items = np.full((data.n_users, n_candidates), -1, dtype=np.int32)
        top_scores = np.zeros((data.n_users, n_candidates), dtype=np.float32)
        lists = cast(pd.DataFrame, recs.select("user", "rank", "item", "score").toPandas())
        users, slots = lists["user"].to_numpy(np.int64), lists["rank"].to_numpy(np.int64) - 1
        top_items[users, slots] = lists["item"].to_numpy(np.int32)
        top_scores[users, slots] = lists["score"].to_numpy(np.float32)
        popular_for_users_without_likes(liked, seen, top_items, top_scores)
        log.info("spark ALS: %d users, %d items in %.1f s",
                 data.n_users, data.n_items, time.perf_counter() - t0)
        from training.train import item_stats_npz

        return TrainedModel(  # a dislike is no popularity (ALS took it as a negative)
            generator="spark-als",
            parameters={"rank": rank, "regParam": reg, "alpha": alpha, "maxIter": max_iter,
                        "seed": seed, "blocks": blocks},
            user_ids=data.user_ids,
            item_ids=data.item_ids,
            top_items=top_items,
            top_scores=top_scores,
            popularity=np.bincount(liked.items, minlength=data.n_items).astype(np.float32),
            extra_files={"item_stats.npz": item_stats_npz(liked)},
        )

    return train


# ---------------------------------------------------------------------------------------------
# The job


def run_job(spark: Any, runtime: Any, args: argparse.Namespace) -> Any:
    """Reads, then runs the shared retrain pipeline with the Spark trainer; returns its result."""
    from training.retrain import RetrainConfig, retrain_tenant

    df = read_interactions(spark, args.events, args.format, args.tenant, args.window_days,
                           runtime.settings.default_tenant)
    data = to_interactions(df, f"spark:{args.events}")
    trainer = spark_als_trainer(spark, args.rank, args.reg, args.alpha, args.max_iter,
                                args.n_candidates, args.seed, args.blocks)
    base = RetrainConfig.from_settings(runtime.settings)
    config = RetrainConfig(
        window_days=None,  # Spark applied the window already
        gate_tolerance=base.gate_tolerance, n_candidates=args.n_candidates, fill=base.fill,
    )
    return retrain_tenant(runtime, args.tenant, data, trainer, config)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from pyspark.sql import SparkSession

    from shared.ids import is_valid_tenant, tenant_error
    from shared.runtime import get_runtime
    from shared.settings import ConfigurationError
    from shared.stores.errors import BackendError

    if not is_valid_tenant(args.tenant):
        print(f"error: {tenant_error(args.tenant)}", file=sys.stderr)
        return 2
    # The CLI's exits: a sentence and 2 for what the job was given (data, settings: the
    # secret scope), a sentence and 1 for a store down (a retry resumes the publish).
    try:
        runtime = get_runtime()  # settings first: a bad one stops the job before Spark starts
        spark = (
            SparkSession.builder.appName(f"recommender-retrain-{args.tenant}")
            # columnar transfers for the driver's two collections and the ratings upload (on
            # by default on Databricks; without it toPandas falls back to row-by-row)
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            # an event time without an offset is UTC, as the timer path reads it (Spark would
            # otherwise read it in the cluster's time zone)
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        result = run_job(spark, runtime, args)
    except (DataError, FileNotFoundError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:
        print(f"error: {exc}; run the job again once it is reachable (what was done stays "
              "done: publishing resumes where it stopped)", file=sys.stderr)
        return 1
    print(result.message)
    return 1 if result.status == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
