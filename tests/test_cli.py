"""The offline CLI on the embedded defaults: a sentence on success, exit 2 with one on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.ids import TENANT_RULE

ROOT = Path(__file__).resolve().parents[1]


# A guard against hangs, not a speed check: retrain's tuning budget is wall-clock (up to a
# minute and a half for each of the two pipelines retrain fits), so a busy machine can take
# minutes.
CLI_TIMEOUT_SECONDS = 280  # under pytest-timeout's 300


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECO_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS)


def test_sample_data_then_retrain_publishes_a_version(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    assert _run(tmp_path, "sample-data", "--out", str(sample)).returncode == 0
    lines = sample.read_text().splitlines()
    last = lines[-1].split(",")
    lines.append(",".join(["not a valid id", *last[1:]]))  # cleaning drops this user's row
    sample.write_text("\n".join(lines) + "\n")
    done = _run(tmp_path, "retrain", "--interactions", str(sample))
    assert done.returncode == 0, done.stderr
    assert "published version v" in done.stdout and ": 500 users" in done.stdout  # not 501
    assert f"interactions (of {len(lines) - 1} read)" in done.stdout
    assert list((tmp_path / "data" / "artifacts" / "default").glob("v*/manifest.json"))


def test_missing_file_and_missing_column_exit_2_with_a_sentence(tmp_path: Path) -> None:
    missing = _run(tmp_path, "retrain", "--interactions", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2
    assert "interactions file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n1,2\n")
    wrong = _run(tmp_path, "retrain", "--interactions", str(bad))
    assert wrong.returncode == 2 and "column 'user_id' not found" in wrong.stderr


def test_retrain_on_a_movielens_folder_publishes_item_categories(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    rows = [f"{u}\t{i}\t{1 + (u + i) % 5}\t{880000000 + u * 100 + i}"
            for u in range(1, 41) for i in range(1, 31) if (u * 7 + i) % 3]
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    flags = ["0"] * 19
    items = []
    for i in range(1, 31):
        f = list(flags)
        f[1 + i % 3] = "1"  # Action, Adventure or Animation
        items.append("|".join([str(i), f"Movie {i} (1995)", "01-Jan-1995", "", "http://x", *f]))
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    done = _run(tmp_path, "retrain", "--interactions", str(folder))
    assert done.returncode == 0, done.stderr
    (items_json,) = (tmp_path / "data" / "artifacts" / "default").glob("v*/items.json")
    meta = json.loads(items_json.read_text())
    assert meta["1"] == {"title": "Movie 1 (1995)", "categories": ["Adventure"]}


def test_retrain_on_parquet_with_a_timestamp_column_publishes_a_version(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    sample = tmp_path / "sample.csv"
    assert _run(tmp_path, "sample-data", "--out", str(sample)).returncode == 0
    table = pacsv.read_csv(sample)
    ticks = pa.array(table.column("timestamp").to_numpy() * 10**9).cast(pa.timestamp("ns", "UTC"))
    table = table.set_column(table.column_names.index("timestamp"), "timestamp", ticks)
    pq.write_table(table, tmp_path / "sample.parquet")
    done = _run(tmp_path, "retrain", "--interactions", str(tmp_path / "sample.parquet"))
    assert done.returncode == 0, done.stderr  # was OSError: [Errno 75] Value too large
    assert "published version v" in done.stdout and "500 users" in done.stdout


def test_retrain_with_redis_down_says_so_and_exits_1_without_a_traceback(tmp_path: Path) -> None:
    """Publishing writes to the cache: an unreachable Redis was a BackendError traceback."""
    from tests import services

    data = tmp_path / "tiny.csv"
    data.write_text("user_id,item_id\n" + "".join(f"u{n},i{n % 7}\n" for n in range(40)))
    env = {**os.environ, "RECO_DATA_DIR": str(tmp_path / "data"), "REDIS_HOST": "127.0.0.1",
           "REDIS_PORT": str(services.free_port()), "REDIS_TIMEOUT_SECONDS": "0.5"}
    done = subprocess.run([sys.executable, "-m", "training", "retrain", "--interactions",
                           str(data)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "run the command again" in last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [
    ("retrain", "--interactions", "{data}"),
    ("list-versions",),
    ("rollback",),
    ("fill-cache", "--version", "v1"),
    ("report-experiment",),
])
def test_a_tenant_with_a_colon_exits_2_with_the_tenant_rule(tmp_path: Path,
                                                           command: tuple[str, ...]) -> None:
    """Tenant "shop:v1" was published under cache keys that tenant "shop" deletes when it
    expires version "v1"; every command taking --tenant refuses it before doing anything."""
    data = tmp_path / "tiny.csv"
    data.write_text("user_id,item_id\n" + "".join(f"u{n},i{n % 7}\n" for n in range(40)))
    args = [a.format(data=data) for a in command]
    done = _run(tmp_path, *args, "--tenant", "shop:v1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: tenant 'shop:v1' is not valid: {TENANT_RULE}"
    assert not (tmp_path / "data" / "artifacts" / "shop:v1").exists()
