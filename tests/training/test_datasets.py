"""Local-file readers on tiny files written by the tests (no network, no shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.datasets import (
    category_matrix,
    download,
    file_digest,
    load_movielens,
    read_interactions,
    read_movielens_1m,
    read_movielens_1m_items,
    read_movielens_latest,
    read_movielens_latest_items,
)
from training.interactions import DataError


def test_ml100k_folder_with_genres(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\t10\t3\t200\n2\t20\t4\t300\n")
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"
    line = "|".join(["10", "Toy Story (1995)", "01-Jan-1995", "", "http://x", *flags])
    (tmp_path / "u.item").write_bytes((line + "\n").encode("latin-1"))
    data, meta = load_movielens(tmp_path)
    assert len(data) == 3 and data.n_users == 2
    assert meta["10"] == {"title": "Toy Story (1995)", "categories": ["Action", "Comedy"]}
    cats, names = category_matrix(data.item_ids, meta)
    assert names == ["Action", "Comedy"] and cats.tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_ml1m_readers(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (tmp_path / "movies.dat").write_bytes(
        "1193::One Flew Over (1975)::Drama\n661::James (1996)::Animation|Children's\n".encode(
            "latin-1"
        )
    )
    data = read_movielens_1m(tmp_path)
    assert data.weights.tolist() == [5.0, 3.0] and data.timestamps[0] == 978300760
    assert read_movielens_1m_items(tmp_path)["661"]["categories"] == ["Animation", "Children's"]


def test_ml_latest_readers(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Comedy\n3,X,(no genres listed)\n'
    )
    data = read_movielens_latest(tmp_path)
    assert data.weights.tolist() == [4.0, 4.5]
    meta = read_movielens_latest_items(tmp_path)
    assert meta["1"]["title"] == "Toy Story, The (1995)" and meta["3"]["categories"] == []


def test_generic_csv_with_custom_columns(tmp_path: Path) -> None:
    p = tmp_path / "events.csv"
    p.write_text("who,what,score,when\na,x,2,10\nb,x,1,11\n")
    data = read_interactions(
        p, user_col="who", item_col="what", weight_col="score", time_col="when"
    )
    assert list(data.user_ids) == ["a", "b"] and data.weights.tolist() == [2.0, 1.0]
    with pytest.raises(DataError):
        read_interactions(p, user_col="nope")


def test_download_uses_verified_cache_without_network(tmp_path: Path) -> None:
    (tmp_path / "ml-100k").mkdir()
    assert download("ml-100k", tmp_path) == tmp_path / "ml-100k"
    with pytest.raises(DataError):
        download("not-a-dataset", tmp_path)


def test_file_digest(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert file_digest(p, "md5") == "900150983cd24fb0d6963f7d28e17f72"
    assert np.asarray([1]).size == 1
