"""The Databricks job's driver side in Spark local mode: time and driver memory of reading the
interactions to the driver, Spark ALS, and collecting every user's candidate list.

    python -m bench.spark.run [--users 50000] [--interactions 1000000] [--rank 16]

Synthetic interaction files (Parquet, zipf item popularity) are written to a temporary folder;
the job's own `read_interactions`, `to_interactions` and `spark_als_trainer` run on them in
`local[2]`. Needs `requirements-spark.txt` (pyspark, pandas, pyarrow) and Java 17.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def write_interactions(folder: Path, users: int, items: int, n: int) -> str:
    import pandas as pd

    rng = np.random.default_rng(0)
    path = folder / "interactions.parquet"
    pd.DataFrame({
        "user_id": np.char.add("u", rng.integers(0, users, n).astype(str)),
        "item_id": np.char.add("i", (rng.zipf(1.2, n) % items).astype(str)),
        "weight": np.ones(n, np.float32),
        "timestamp": rng.integers(1_700_000_000, 1_710_000_000, n),
    }).to_parquet(path)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=3_000)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--max-iter", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from training import spark_job

    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        path = write_interactions(Path(tmp), args.users, args.items, args.interactions)
        spark = (
            SparkSession.builder.master("local[2]").appName("bench-spark")
            .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.memory", "4g").config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        try:
            t0 = time.perf_counter()
            df = spark_job.read_interactions(spark, path, "parquet", "default", None)
            data = spark_job.to_interactions(df, path)
            t1 = time.perf_counter()
            train = spark_job.spark_als_trainer(spark, rank=args.rank, max_iter=args.max_iter,
                                                n_candidates=100, blocks=4)
            model = train(data)
            t2 = time.perf_counter()
        finally:
            spark.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lists = int((model.top_items >= 0).any(axis=1).sum())
    print(f"{len(data):,} interactions of {data.n_users:,} users and {data.n_items:,} items")
    print(f"  read to the driver      {t1 - t0:7.1f} s")
    print(f"  ALS fit + candidates    {t2 - t1:7.1f} s  ({lists:,} users with a list of up to 100)")
    print(f"  driver (Python) max RSS {rss:7.0f} MiB")


if __name__ == "__main__":
    main()
