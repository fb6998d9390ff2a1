"""`train`, `recommend` and `evaluate`: the path anyone takes to score the model themselves."""

from __future__ import annotations

import csv
import json
import shutil
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


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "in.csv").write_text("user_id,item_id\nu1,a\nu1,b\nu2,b\nu3,c\n")
    assert main(["train", "--interactions", str(folder / "in.csv"), "--out", str(folder / "m"),
                 "--tuning-seconds", "1"]) == 0
    return folder / "m"


def _one_sentence(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(("name", "body", "expected"), [
    ("x.parquet", b"not parquet at all", "is not a readable Parquet file"),
    ("inf.csv", b"user_id,item_id,timestamp\n1,2,inf\n", "line 2: column 'timestamp' has"),
    ("short.csv", b"user_id,item_id\n1\n", "line 2: expected 2 comma-separated fields"),
    ("latin.csv", b"user_id,item_id\n\xe9,2\n", "is not UTF-8 text"),
    ("blank.csv", b"user_id,item_id\nu1,i1\n ,i2\n", "line 3: an empty 'user_id' cell"),
], ids=["not-parquet", "inf-time", "short-row", "not-utf8", "empty-id"])
def test_bad_interaction_files_exit_2_with_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path, name: str,
    body: bytes, expected: str,
) -> None:
    bad = tmp_path / name
    bad.write_bytes(body)
    assert main(["train", "--interactions", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert expected in _one_sentence(capsys)
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(bad)]) == 2
    assert expected in _one_sentence(capsys)


def test_damaged_artifacts_exit_2_with_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path,
) -> None:
    recs = str(tmp_path / "r.csv")
    for damaged, body, expected in [
        ("manifest.json", b"{not json", "manifest.json is not a JSON object"),
        ("manifest.json", b'{"parameters": 5}', "manifest.json has fields of the wrong type"),
        ("candidates.npz", b"garbage", "candidates.npz is damaged"),
        ("candidates.npz", (tiny_model / "candidates.npz").read_bytes()[:100],
         "candidates.npz is damaged"),
    ]:
        model = tmp_path / f"copy-{damaged}"
        shutil.copytree(tiny_model, model, dirs_exist_ok=True)
        (model / damaged).write_bytes(body)
        assert main(["recommend", "--model", str(model), "--out", recs]) == 2
        assert expected in _one_sentence(capsys)


def test_unusable_out_exits_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "in.csv"
    data.write_text("user_id,item_id\nu1,a\nu2,b\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("")

    def no_training(*args: object) -> None:
        raise AssertionError("trained although --out cannot be written")

    monkeypatch.setattr("training.commands.train.train_default", no_training)
    for out, expected in [(a_file, "is a file; give a folder"),
                          (a_file / "m", "a-file is a file, not a folder")]:
        assert main(["train", "--interactions", str(data), "--out", str(out)]) == 2
        assert expected in _one_sentence(capsys)
    for out, expected in [(tmp_path, "is a folder; give a file name"),
                          (a_file / "r.csv", "a-file is a file, not a folder")]:
        assert main(["recommend", "--model", str(tiny_model), "--out", str(out)]) == 2
        assert expected in _one_sentence(capsys)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("training.commands.offline_io.tempfile.TemporaryFile", denied)
    assert main(["train", "--interactions", str(data), "--out", str(tmp_path / "new")]) == 2
    assert "cannot be written" in _one_sentence(capsys) and not (tmp_path / "new").exists()


def test_file_errors_left_over_exit_2_but_others_keep_their_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fails(error: OSError) -> object:
        def load(folder: Path) -> None:
            raise error
        return load

    monkeypatch.setattr("training.commands.recommend.load",
                        fails(PermissionError(13, "Permission denied", "/x/y.npz")))
    assert main(["recommend", "--model", str(tiny_model), "--out", str(tmp_path / "r.csv")]) == 2
    assert _one_sentence(capsys) == "error: cannot use /x/y.npz: Permission denied"
    monkeypatch.setattr("training.commands.recommend.load", fails(ConnectionResetError(104, "x")))
    with pytest.raises(ConnectionResetError):
        main(["recommend", "--model", str(tiny_model), "--out", str(tmp_path / "r.csv")])


def test_users_with_two_items_each_train_a_popularity_model_with_the_reason(
    tmp_path: Path,
) -> None:
    """With one or two items per user, none can be held out to tune on: the validation split
    was empty and training failed with a traceback."""
    data = tmp_path / "two.csv"
    lines = ["user_id,item_id,timestamp"]
    for u in range(150):
        lines += [f"u{u},i{u % 30},{1000 + u}", f"u{u},i{(u + 7) % 30},{2000 + u}"]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "model"
    assert main(["train", "--interactions", str(data), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"] == "popularity"
    assert "too few to tune on" in manifest["parameters"]["reason"]


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path: Path, tiny_model: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Excel's "CSV UTF-8" starts with a BOM, which was read as part of 'user_id'."""
    test = tmp_path / "bom.csv"
    test.write_bytes("user_id,item_id\nu1,c\n".encode("utf-8-sig"))  # c: in the catalogue
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(test)]) == 0


def test_a_train_that_fails_while_writing_leaves_no_folder_recommend_would_accept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Overwriting an earlier model, a full disk after the first file left the new candidates
    under the old manifest, which `recommend` served as the old model."""
    data = tmp_path / "in.csv"
    data.write_text("user_id,item_id\nu1,a\nu1,b\nu2,b\nu3,c\n")
    out = tmp_path / "m"
    assert main(["train", "--interactions", str(data), "--out", str(out)]) == 0
    from shared.stores.artifacts import LocalArtifactStore

    real_put = LocalArtifactStore.put
    writes = [0]

    def disk_full_after_one(self: LocalArtifactStore, path: str, blob: bytes) -> None:
        writes[0] += 1
        if writes[0] > 1:
            raise OSError(28, "No space left on device", path)  # as the OS reports it
        real_put(self, path, blob)

    monkeypatch.setattr(LocalArtifactStore, "put", disk_full_after_one)
    assert main(["train", "--interactions", str(data), "--out", str(out)]) == 2
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["recommend", "--model", str(out), "--out", str(tmp_path / "r.csv")]) == 2
    assert "manifest" in _one_sentence(capsys)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_named_weight_or_time_column_the_file_lacks_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path, suffix: str,
) -> None:
    """`--weight-col score` on a file without 'score' trained with every weight 1 (and
    `--time-col` with every timestamp 0) and said nothing; only the defaults are optional."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / f"in{suffix}"
    table = pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
                      "rating": [5, 1, 3], "ts": [1700000000, 1700000100, 1700000200]})
    if suffix == ".csv":
        data.write_text("user_id,item_id,rating,ts\nu1,a,5,1700000000\nu1,b,1,1700000100\n"
                        "u2,a,3,1700000200\n")
    else:
        pq.write_table(table, data)
    for flag, name in [("--weight-col", "score"), ("--time-col", "time")]:
        assert main(["train", "--interactions", str(data), "--out", str(tmp_path / "m"),
                     flag, name]) == 2
        assert f"column '{name}' not found" in _one_sentence(capsys)
        assert main(["evaluate", "--model", str(tiny_model), "--test", str(data),
                     flag, name]) == 2
        assert f"column '{name}' not found" in _one_sentence(capsys)
    assert main(["train", "--interactions", str(data), "--out", str(tmp_path / "m"),
                 "--weight-col", "rating", "--time-col", "ts", "--tuning-seconds", "1"]) == 0


@pytest.mark.parametrize("seconds", ["nan", "inf", "-5", "0"])
def test_a_tuning_budget_that_is_not_a_positive_number_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seconds: str,
) -> None:
    """`--tuning-seconds nan` (or inf, or a negative) trained anyway, and the manifest got
    `"tuning_seconds": NaN`, which is not JSON to any reader but Python's."""
    data = tmp_path / "in.csv"
    data.write_text("user_id,item_id\nu1,a\nu2,b\n")
    assert main(["train", "--interactions", str(data), "--out", str(tmp_path / "m"),
                 f"--tuning-seconds={seconds}"]) == 2
    assert "--tuning-seconds must be" in _one_sentence(capsys)
    assert not (tmp_path / "m").exists()


def test_evaluate_at_a_k_beyond_the_stored_candidates_says_so(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`evaluate --k 500` on an artifact of 100 candidates per user scored @500 from lists of
    100 (recall understated) without a word; `recommend` already said so."""
    test = tmp_path / "t.csv"
    test.write_text("user_id,item_id\nu1,c\n")
    kept = int(np.load(tiny_model / "candidates.npz")["top_items"].shape[1])
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(test),
                 "--k", str(kept + 1)]) == 0
    assert f"the artifact keeps {kept} candidates per user" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(test),
                 "--k", str(kept)]) == 0
    assert "candidates per user" not in capsys.readouterr().err


def test_evaluate_counts_no_dislike_as_a_hit_and_skips_users_with_only_dislikes(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Weights of 0 or below in the test file are dislikes: u2's list (a, c) hits c only,
    and u3, who only disliked b, is not averaged over."""
    test = tmp_path / "t.csv"
    test.write_text("user_id,item_id,weight\nu2,a,-1\nu2,c,1\nu3,b,0\n")
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(test), "--k", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["users"], result["precision@2"]) == (1, 0.5)
    only = tmp_path / "only.csv"
    only.write_text("user_id,item_id,weight\nu2,a,-1\n")
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(only)]) == 2
    assert "no test row has a weight above 0" in _one_sentence(capsys)


def test_evaluate_with_no_test_item_the_model_knows_exits_2(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A test file whose item ids are written differently (pandas writes "1.0" for 1 once a
    column had gaps) matched every user and no item: all metrics 0, exit 0, no word."""
    test = tmp_path / "t.csv"
    test.write_text("user_id,item_id\nu1,c.0\nu2,a.0\n")
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(test)]) == 2
    assert "none of the test items" in _one_sentence(capsys)
    test.write_text("user_id,item_id\nu1,c\nu2,a.0\n")
    assert main(["evaluate", "--model", str(tiny_model), "--test", str(test)]) == 0
    assert "1 of 2 test items are not in the model's catalogue" in capsys.readouterr().err


def test_train_keeps_a_repeated_row_once_as_retrain_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The same (user, item, time) twice, as an export with replayed events has it, counted
    twice offline (popularity, weights, the re-ranker's item statistics) while `retrain`
    kept it once: the same file gave two different models."""
    data = tmp_path / "in.csv"
    data.write_text("user_id,item_id,timestamp\nu1,a,10\nu1,a,10\nu1,a,10\nu2,b,11\nu3,b,12\n"
                    "u1,b,20\n")
    out = tmp_path / "m"
    assert main(["train", "--interactions", str(data), "--out", str(out)]) == 0
    assert "2 duplicate rows" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"]["interactions"] == 4
    popularity = np.load(out / "candidates.npz")["popularity"]
    assert popularity.tolist() == [1.0, 3.0]  # a once, b three times


def test_sample_data_with_an_unusable_out_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`sample-data` skipped the --out checks of train and recommend: a file on the way said
    "cannot use .../a-file: File exists"."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for out, expected in [(tmp_path, "is a folder; give a file name"),
                          (a_file / "s.csv", "a-file is a file, not a folder")]:
        assert main(["sample-data", "--out", str(out)]) == 2
        assert expected in _one_sentence(capsys)


def test_column_flags_on_a_movielens_folder_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """MovieLens files have fixed columns: `--weight-col score` on a folder was ignored
    without a word, although a named column must exist."""
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\t10\t3\t200\n")
    for flag in ["--weight-col", "--time-col", "--user-col", "--item-col"]:
        assert main(["train", "--interactions", str(tmp_path), "--out", str(tmp_path / "m"),
                     flag, "x"]) == 2
        assert f"{flag} applies to CSV and Parquet files" in _one_sentence(capsys)


def test_long_steps_say_how_far_they_are(split: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Training logs each phase (tuning per family, blend, re-ranker, refit); recommend says
    how many users it has written at intervals (here every user: the interval is 0)."""
    from training.commands import recommend

    train_csv, _ = split
    model_dir = tmp_path / "model"
    with caplog.at_level("INFO", logger="training"):
        assert main(["train", "--interactions", str(train_csv), "--out", str(model_dir),
                     "--tuning-seconds", "2"]) == 0
    logged = " | ".join(r.getMessage() for r in caplog.records)
    for fragment in ("plan:", "first trial", "budget", "blend weights", "re-ranker:", "refit:"):
        assert fragment in logged
    capsys.readouterr()
    monkeypatch.setattr(recommend, "PROGRESS_SECONDS", 0.0)
    assert main(["recommend", "--model", str(model_dir), "--k", "5",
                 "--out", str(tmp_path / "r.csv")]) == 0
    assert "... 199 of 200 users written" in capsys.readouterr().err
