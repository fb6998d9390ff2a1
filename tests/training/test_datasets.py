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


@pytest.mark.parametrize(("body", "expected"), [
    (b"user_id,item_id\n1,2\n1\n", "line 3: expected 2 comma-separated fields, found fewer"),
    (b"user_id,item_id\n1,2\n1,Toy Story, The\n",
     "line 3: expected 2 comma-separated fields, found more"),
    (b"user_id,item_id\n\xff,2\n", "is not UTF-8 text"),
    (b"user_id,item_id\n" + b"a" * 200_000 + b",2\n", "line 2: field larger than field limit"),
    (b"user_id,item_id,timestamp\n1,2,inf\n", "line 2: column 'timestamp' has 'inf', but"),
    (b"user_id,item_id,timestamp\n1,2,1e30\n", "line 2: column 'timestamp' has '1e30', but"),
    (b"user_id,item_id,weight\n1,2,1\n1,3,nan\n", "line 3: column 'weight' has 'nan', but"),
    (b"user_id,item_id,weight\n1,2,-inf\n", "column 'weight' has '-inf', but"),
    (b"user_id,item_id,weight\n1,2,\n", "line 2: column 'weight' has '', which is not a number"),
    (b"user_id,item_id,weight\n1,2,1_0\n", "column 'weight' has '1_0', which is not a number"),
    (b"user_id,item_id,timestamp\n1,2,1_000\n", "column 'timestamp' has '1_000', which is not"),
], ids=["short-row", "long-row", "not-utf8", "huge-field", "inf-time", "huge-time", "nan-weight",
        "inf-weight", "empty-weight", "grouped-weight", "grouped-time"])
def test_bad_csv_rows_are_data_errors_with_a_sentence(tmp_path: Path, body: bytes,
                                                      expected: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(body)
    with pytest.raises(DataError, match=expected):
        read_interactions(p)


def test_bad_movielens_cells_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\tten\t3\t200\n")
    with pytest.raises(DataError, match="expected tab-separated integers"):
        load_movielens(tmp_path)
    (tmp_path / "ratings.dat").write_text("1::1193::nan::978300760\n")
    with pytest.raises(DataError, match="line 1: column 'rating' has 'nan'"):
        read_movielens_1m(tmp_path)
    (tmp_path / "movies.csv").write_text("movieId,name,genres\n1,Toy Story,Comedy\n")
    with pytest.raises(DataError, match="column 'title' not found"):
        read_movielens_latest_items(tmp_path)


def _parquet(path: Path, **columns: object) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = {"user_id": ["u1", "u2", "u1"], "item_id": ["a", "b", "b"]}
    pq.write_table(pa.table({**base, **columns}), path)
    return path


def test_parquet_timestamps_of_any_unit_and_zone_become_unix_seconds(tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow as pa

    when = pd.to_datetime(["2024-01-01T00:00:00.9", "2024-02-01", "2024-03-01"], utc=True,
                          format="ISO8601")
    seconds = [1704067200, 1706745600, 1709251200]
    for n, column in enumerate([
        pa.array(when, pa.timestamp("ns", "UTC")),
        pa.array(when.tz_convert("Asia/Tokyo"), pa.timestamp("us", "Asia/Tokyo")),
        pa.array(when.tz_localize(None).floor("s"), pa.timestamp("s")),  # stored as ms
        pa.array(when.tz_localize(None).date, pa.date32()),
        pa.array(seconds, pa.int64()),
    ]):
        data = read_interactions(_parquet(tmp_path / f"t{n}.parquet", timestamp=column))
        assert data.timestamps.tolist() == seconds, column.type


def test_bad_parquet_files_and_columns_are_data_errors(tmp_path: Path) -> None:
    import pyarrow as pa

    (tmp_path / "not.parquet").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match="is not a readable Parquet file"):
        read_interactions(tmp_path / "not.parquet")
    cases: list[tuple[str, dict[str, object], str]] = [
        ("w", {"weight": ["1", "x", "2"]}, "column 'weight' holds string values, not numbers"),
        ("t", {"timestamp": ["a", "b", "c"]}, "column 'timestamp' holds string values"),
        ("nan", {"weight": [1.0, float("nan"), 2.0]}, "row 2: column 'weight' has nan, but"),
        ("big", {"timestamp": pa.array([1, 10**17, 2])}, "row 2: column 'timestamp' has 1e"),
        ("null", {"timestamp": pa.array([1, None, 2])}, "row 2: column 'timestamp' has nan"),
    ]
    for name, columns, expected in cases:
        with pytest.raises(DataError, match=expected):
            read_interactions(_parquet(tmp_path / f"{name}.parquet", **columns))
    users = pa.array(["u1", None, "u2"])
    with pytest.raises(DataError, match="column 'user_id' has 1 empty values"):
        read_interactions(_parquet(tmp_path / "nu.parquet", user_id=users))


def test_parquet_ids_read_like_csv_ids(tmp_path: Path) -> None:
    """Byte columns (how Hive and Impala store strings) with non-ASCII ids and nested columns
    ended in a traceback (UnicodeDecodeError, ValueError); ids with spaces around them or
    empty ones were kept, where the CSV reader strips them and refuses an empty id, so
    `evaluate` on a Parquet test file matched no user of a model trained from a CSV."""
    import pyarrow as pa

    data = read_interactions(_parquet(tmp_path / "b.parquet", user_id=pa.array(
        [b"caf\xc3\xa9", b"u2", b"caf\xc3\xa9"]), item_id=[" a", "b ", "b"]))
    assert data.user_ids.tolist() == ["caf\u00e9", "u2"] and data.item_ids.tolist() == ["a", "b"]
    for name, columns, expected in [
        ("latin1", {"user_id": pa.array([b"\xe9", b"u2", b"u1"])},
         "column 'user_id' holds bytes that are not UTF-8 text"),
        ("ragged", {"item_id": pa.array([[1], [2, 3], [4]])},
         "column 'item_id' holds list<.*> values; ids must be text or numbers"),
        ("lists", {"user_id": pa.array([[1], [2], [3]])}, "column 'user_id' holds list<"),
        ("blank", {"item_id": ["a", " ", "b"]}, "row 2: an empty 'item_id' value"),
    ]:
        with pytest.raises(DataError, match=expected):
            read_interactions(_parquet(tmp_path / f"{name}.parquet", **columns))


def test_parquet_fixed_size_and_view_binary_ids_are_read_as_text(tmp_path: Path) -> None:
    """FIXED_LEN_BYTE_ARRAY and binary_view columns are bytes too: str() of them made every id
    "b'u1'", silently matching no user or item of a model trained from a CSV."""
    import pyarrow as pa

    for name, kind in [("fixed", pa.binary(2)), ("view", pa.binary_view())]:
        data = read_interactions(_parquet(tmp_path / f"{name}.parquet", user_id=pa.array(
            [b"u1", b"u2", b"u1"], kind)))
        assert data.user_ids.tolist() == ["u1", "u2"], name
        with pytest.raises(DataError, match="holds bytes that are not UTF-8 text"):
            read_interactions(_parquet(tmp_path / f"{name}-bad.parquet", user_id=pa.array(
                [b"\xe9\xe9", b"u2", b"u1"], kind)))


def test_parquet_float_and_decimal_ids_read_as_whole_numbers(tmp_path: Path) -> None:
    """pandas stores integer ids as floats once a column had gaps: they were read as "1.0",
    silently matching no user of a model trained from a CSV or of the app's events."""
    import decimal

    import pyarrow as pa

    dec = pa.array([decimal.Decimal("1.00"), decimal.Decimal("2.00"), decimal.Decimal("1.00")],
                   pa.decimal128(5, 2))
    for name, users in [("float", pa.array([1.0, 2.0, 1.0])), ("decimal", dec),
                        ("dict", pa.array([1.0, 2.0, 1.0]).dictionary_encode())]:
        data = read_interactions(_parquet(tmp_path / f"{name}.parquet", user_id=users))
        assert data.user_ids.tolist() == ["1", "2"], name
    with pytest.raises(DataError, match="column 'item_id' holds double values that are not "
                       "whole numbers"):
        read_interactions(_parquet(tmp_path / "half.parquet", item_id=[1.0, 1.5, 2.0]))


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


def test_ml_latest_movies_with_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    """ratings.csv was read past a BOM (Excel's "CSV UTF-8") but movies.csv was not: its
    first column was '\\ufeffmovieId', so the folder failed with "column 'movieId' not found"."""
    (tmp_path / "ratings.csv").write_bytes(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n".encode("utf-8-sig"))
    (tmp_path / "movies.csv").write_bytes(
        "movieId,title,genres\n1,Toy Story (1995),Comedy\n".encode("utf-8-sig"))
    data, meta = load_movielens(tmp_path)
    assert data.item_ids.tolist() == ["1"] and meta["1"]["categories"] == ["Comedy"]


def test_an_empty_ml100k_file_says_so_without_a_warning(
    tmp_path: Path, recwarn: pytest.WarningsRecorder,
) -> None:
    """An empty u.data printed numpy's UserWarning with a line of our code, then said
    "expected 4 tab-separated columns, found 1"."""
    (tmp_path / "u.data").write_text("")
    with pytest.raises(DataError, match=r"no interactions found in .*u\.data"):
        load_movielens(tmp_path)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_ml1m_files_with_a_byte_order_mark_keep_their_first_id(tmp_path: Path) -> None:
    """Read as Latin-1, a UTF-8 BOM became part of the first line's id: a user "\u00ef\u00bb\u00bf1"
    beside user "1", and the first movie's title and genres under no movie id."""
    bom = b"\xef\xbb\xbf"
    (tmp_path / "ratings.dat").write_bytes(bom + b"1::1193::5::978300760\n1::661::3::978302109\n")
    (tmp_path / "movies.dat").write_bytes(bom + b"1193::One Flew Over (1975)::Drama\n")
    assert read_movielens_1m(tmp_path).user_ids.tolist() == ["1"]
    assert read_movielens_1m_items(tmp_path)["1193"]["categories"] == ["Drama"]
