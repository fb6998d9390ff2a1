"""`train`, `recommend` and `evaluate`: the path anyone takes to score the model themselves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.interactions import read_csv
from training.sample_data import write_sample


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample data with each user's last interaction held out as test."""
    folder = tmp_path_factory.mktemp("offline")
    sample = write_sample(folder / "all.csv", n_users=200, n_items=120, per_user=20)
    with sample.open() as fh:
        rows = list(csv.DictReader(fh))
    last: dict[str, dict[str, str]] = {}
    for row in rows:
        if row["user_id"] not in last or row["timestamp"] > last[row["user_id"]]["timestamp"]:
            last[row["user_id"]] = row
    held = {id(r) for r in last.values()}
    for name, part in (("train", [r for r in rows if id(r) not in held]),
                       ("test", list(last.values()))):
        with (folder / f"{name}.csv").open("w", newline="") as fh:
            out = csv.DictWriter(fh, fieldnames=list(rows[0]))
            out.writeheader()
            out.writerows(part)
    return folder / "train.csv", folder / "test.csv"


def test_train_recommend_evaluate(split: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    train_csv, test_csv = split
    model_dir = tmp_path / "model"
    assert main(["train", "--interactions", str(train_csv), "--out", str(model_dir),
                 "--tuning-seconds", "2"]) == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["rows"]["users"] == 200 and (model_dir / "candidates.npz").is_file()
    assert "written to" in capsys.readouterr().out

    recs_csv = tmp_path / "recs.csv"
    assert main(["recommend", "--model", str(model_dir), "--k", "10", "--out", str(recs_csv)]) == 0
    with recs_csv.open() as fh:
        recs = list(csv.DictReader(fh))
    assert len(recs) == 200 * 10
    assert [r["rank"] for r in recs[:10]] == [str(i) for i in range(1, 11)]
    seen = read_csv(train_csv)
    seen_pairs = set(zip(seen.user_ids[seen.users].tolist(), seen.item_ids[seen.items].tolist(),
                         strict=True))
    assert not {(r["user"], r["item"]) for r in recs} & seen_pairs

    capsys.readouterr()
    assert main(["evaluate", "--model", str(model_dir), "--test", str(test_csv), "--k", "10"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["users"] == 200 and result["k"] == 10
    # hand check: hit rate from the CSV equals precision@10 x 10 (one test item per user)
    held = {r["user_id"]: r["item_id"] for r in csv.DictReader(test_csv.open())}
    hits = sum(1 for r in recs if held[r["user"]] == r["item"])
    assert result["precision@10"] == pytest.approx(hits / (200 * 10), abs=1e-6)
    assert result["recall@10"] == pytest.approx(hits / 200, abs=1e-6)
    assert result["ndcg@10"] > 0 and np.isfinite(result["novelty"])
    assert "ndcg@10" in out.err  # the readable table


def test_bad_inputs_exit_2_with_a_sentence(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--model", str(tmp_path), "--out", str(tmp_path / "r.csv")]) == 2
    assert "not a model artifact" in capsys.readouterr().err
    assert main(["train", "--interactions", str(tmp_path / "none.csv"),
                 "--out", str(tmp_path / "m")]) == 2
    assert "not found" in capsys.readouterr().err
