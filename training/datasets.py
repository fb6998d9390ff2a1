"""Public and generic interaction datasets: download-and-verify, local readers, item metadata.

MovieLens archives are fetched over HTTPS into a cache folder and checked against known
checksums before use; every reader also works on a local copy, which is all tests use.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.interactions import (
    DataError,
    Interactions,
    checked_timestamps,
    checked_weights,
    csv_rows,
    parse_timestamp,
    parse_weight,
    read_csv,
    read_movielens_100k,
)

ItemMetadata = dict[str, dict[str, Any]]  # item id -> {"title": str, "categories": [str, ...]}

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip


@dataclass(frozen=True)
class Archive:
    """A published dataset archive and the checksum it must match."""

    url: str
    algorithm: str  # hashlib name
    digest: str
    folder: str  # top-level folder inside the zip


ARCHIVES: dict[str, Archive] = {
    "ml-100k": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "md5",
        "0e33842e24a9c977be4e0107933c0723",
        "ml-100k",
    ),
    "ml-1m": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "md5",
        "c4d9eecfca2ab87c1945afe126590906",
        "ml-1m",
    ),
    "ml-latest-small": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        "sha256",  # the 2018 snapshot (100,836 ratings); GroupLens re-issues "latest" rarely
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        "ml-latest-small",
    ),
}


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks (archives can be hundreds of MB)."""
    h = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, cache_dir: str | Path, timeout: float = 60.0) -> Path:
    """Fetch, verify and unpack a MovieLens archive once; returns the data folder.

    A checksum mismatch deletes the download and raises, so a corrupted or changed file is
    never used silently.
    """
    if name not in ARCHIVES:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(ARCHIVES)}")
    arc = ARCHIVES[name]
    cache = Path(cache_dir)
    target = cache / arc.folder
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    zip_path = cache / f"{name}.zip"
    if not zip_path.is_file():
        part = zip_path.with_suffix(".part")
        with urllib.request.urlopen(arc.url, timeout=timeout) as resp, part.open("wb") as out:
            shutil.copyfileobj(resp, out)
        part.replace(zip_path)
    got = file_digest(zip_path, arc.algorithm)
    if got != arc.digest:
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{name}: {arc.algorithm} {got} does not match the published {arc.digest}")
    with zipfile.ZipFile(zip_path) as zf:
        for member in zf.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise DataError(f"{name}: unsafe path in archive: {member}")
        zf.extractall(cache)
    return target


_BOM_AS_LATIN1 = "\ufeff".encode().decode("latin-1")


def _latin1_lines(p: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a Latin-1 MovieLens file; a UTF-8 byte-order mark (a copy re-saved
    as UTF-8) would otherwise be read as three letters of the first id."""
    with p.open(encoding="latin-1") as fh:
        for line_no, line in enumerate(fh, start=1):
            yield line_no, line.removeprefix(_BOM_AS_LATIN1) if line_no == 1 else line


def _dat_fields(p: Path, n: int) -> Iterator[tuple[int, list[str]]]:
    """Numbered non-blank lines of a MovieLens 1M `.dat` file, split on '::' into `n` fields."""
    for line_no, line in _latin1_lines(p):
        if not line.strip():
            continue
        f = line.rstrip("\r\n").split("::")
        if len(f) != n:
            raise DataError(f"{p}, line {line_no}: expected {n} '::'-separated fields")
        yield line_no, f


def _split_genres(raw: str) -> list[str]:
    return [g for g in raw.split("|") if g and g != "(no genres listed)"]


def read_movielens_100k_items(path: str | Path) -> ItemMetadata:
    """`u.item` (Latin-1, '|'-separated): id, title, dates, URL, then 19 genre flags."""
    p = Path(path)
    p = p / "u.item" if p.is_dir() else p
    if not p.is_file():
        raise DataError(f"MovieLens item file not found: {p}")
    out: ItemMetadata = {}
    for line_no, line in _latin1_lines(p):
        fields = line.rstrip("\r\n").split("|")
        if len(fields) < 5 + len(ML100K_GENRES):
            raise DataError(f"{p}, line {line_no}: expected 24 '|'-separated fields")
        flags = fields[5 : 5 + len(ML100K_GENRES)]
        cats = [g for g, f in zip(ML100K_GENRES, flags, strict=True) if f.strip() == "1"]
        out[fields[0]] = {"title": fields[1], "categories": cats}
    return out


def read_movielens_1m(path: str | Path) -> Interactions:
    """`ratings.dat`: UserID::MovieID::Rating::Timestamp."""
    p = Path(path)
    p = p / "ratings.dat" if p.is_dir() else p
    if not p.is_file():
        raise DataError(f"MovieLens file not found: {p}")
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[int] = []
    for line_no, f in _dat_fields(p, 4):
        try:
            ratings.append(parse_weight(f[2], "rating"))
            times.append(parse_timestamp(f[3], "timestamp"))
        except ValueError as exc:
            raise DataError(f"{p}, line {line_no}: {exc}") from exc
        users.append(f[0])
        items.append(f[1])
    return Interactions.from_columns(users, items, ratings, times, source=str(p))


def read_movielens_1m_items(path: str | Path) -> ItemMetadata:
    """`movies.dat`: MovieID::Title::Genre|Genre."""
    p = Path(path)
    p = p / "movies.dat" if p.is_dir() else p
    if not p.is_file():
        raise DataError(f"MovieLens item file not found: {p}")
    out: ItemMetadata = {}
    for _, f in _dat_fields(p, 3):
        out[f[0]] = {"title": f[1], "categories": _split_genres(f[2])}
    return out


def read_movielens_latest(path: str | Path) -> Interactions:
    """ml-latest(-small) `ratings.csv`: userId,movieId,rating,timestamp with a header."""
    p = Path(path)
    p = p / "ratings.csv" if p.is_dir() else p
    return read_csv(
        p, user_col="userId", item_col="movieId", weight_col="rating", time_col="timestamp"
    )


def read_movielens_latest_items(path: str | Path) -> ItemMetadata:
    """ml-latest `movies.csv`: movieId,title,genres (quoted titles may contain commas)."""
    p = Path(path)
    p = p / "movies.csv" if p.is_dir() else p
    if not p.is_file():
        raise DataError(f"MovieLens item file not found: {p}")
    out: ItemMetadata = {}
    with p.open(newline="", encoding="utf-8-sig") as fh:  # a BOM is not part of 'movieId'
        _, rows = csv_rows(fh, p, ("movieId", "title"))
        for _, row in rows:
            out[row["movieId"]] = {
                "title": row["title"],
                "categories": _split_genres(row.get("genres", "")),
            }
    return out


def load_movielens(path: str | Path) -> tuple[Interactions, ItemMetadata]:
    """Any local MovieLens folder (100K, 1M, latest), recognised by its files."""
    p = Path(path)
    if (p / "u.data").is_file():
        meta = read_movielens_100k_items(p) if (p / "u.item").is_file() else {}
        return read_movielens_100k(p / "u.data"), meta
    if (p / "ratings.dat").is_file():
        meta = read_movielens_1m_items(p) if (p / "movies.dat").is_file() else {}
        return read_movielens_1m(p), meta
    if (p / "ratings.csv").is_file():
        meta = read_movielens_latest_items(p) if (p / "movies.csv").is_file() else {}
        return read_movielens_latest(p), meta
    raise DataError(f"{p}: no MovieLens ratings file (u.data, ratings.dat or ratings.csv)")


def read_interactions(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    weight_col: str | None = "weight",
    time_col: str | None = "timestamp",
    require: Sequence[str] = (),
) -> Interactions:
    """Generic CSV or Parquet interactions with configurable column names; the weight and
    time columns are used when present, and those in `require` must be.

    Parquet needs `pyarrow` (optional; not a run-time dependency of the Function App).
    """
    p = Path(path)
    if p.suffix.lower() != ".parquet":
        return read_csv(p, user_col, item_col, weight_col, time_col, require)
    if not p.is_file():
        raise DataError(f"interactions file not found: {p}")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading Parquet needs the 'pyarrow' package") from exc
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError):
        raise DataError(f"{p} is not a readable Parquet file") from None
    names = table.column_names
    for col in (user_col, item_col, *require):
        if col not in names:
            raise DataError(f"{p}: column '{col}' not found; columns are {names}")
    for col in (user_col, item_col):
        if table.column(col).null_count:
            raise DataError(f"{p}: column '{col}' has {table.column(col).null_count} empty values")
    users = _parquet_ids(table, user_col, p)
    items = _parquet_ids(table, item_col, p)
    weights = times = None
    if weight_col and weight_col in names:
        weights = checked_weights(_parquet_numbers(table, weight_col, p), weight_col, str(p))
    if time_col and time_col in names:
        times = checked_timestamps(_parquet_numbers(table, time_col, p), time_col, str(p))
    return Interactions.from_columns(users, items, weights, times, source=str(p))


def _parquet_ids(table: Any, col: str, p: Path) -> npt.NDArray[np.str_]:
    """An id column as the CSV reader gives it: text without surrounding whitespace, never
    empty. Bytes are read as UTF-8 (Hive, Impala and older Spark write strings as plain
    binary; fixed-size and view binary columns are bytes too); lists, structs and other
    nested values are not ids."""
    import pyarrow as pa

    column = table.column(col)
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_nested(kind):
        raise DataError(f"{p}: column '{col}' holds {column.type} values; ids must be text or "
                        "numbers")
    if (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind)):
        try:
            column = column.cast(pa.large_string())
        except pa.ArrowInvalid:
            raise DataError(f"{p}: column '{col}' holds bytes that are not UTF-8 text") from None
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # pandas writes integer ids as floats once a column had gaps: user 1 must read as "1",
        # as in a CSV and in the app's events, not "1.0"; a safe cast refuses fractions
        try:
            column = column.cast(pa.int64())
        except pa.ArrowInvalid:
            raise DataError(f"{p}: column '{col}' holds {kind} values that are not whole "
                            "numbers; ids must be text or whole numbers") from None
    ids = np.asarray([str(v).strip() for v in column.to_pylist()], dtype=str)
    empty = ids == ""
    if empty.any():
        raise DataError(f"{p}, row {int(np.argmax(empty)) + 1}: an empty '{col}' value; every "
                        "row needs a user and an item id")
    return ids


def _parquet_numbers(table: Any, col: str, p: Path) -> npt.NDArray[np.float64]:
    """A numeric Parquet column as floats (empty values NaN); timestamp and date columns, of
    any unit and time zone, as unix seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(col)
    try:
        if pa.types.is_date(column.type):
            column = column.cast(pa.timestamp("s"))
        if pa.types.is_timestamp(column.type):  # stored as UTC ticks of its unit
            per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[column.type.unit]
            column = pc.divide(column.cast(pa.int64()), per_second)
        column = column.cast(pa.float64(), safe=False)  # huge integers: rejected as values
    except pa.ArrowException:
        raise DataError(f"{p}: column '{col}' holds {column.type} values, not numbers") from None
    return np.asarray(column.to_numpy(), dtype=np.float64)


def category_matrix(
    item_ids: npt.NDArray[np.str_] | Iterable[str], metadata: ItemMetadata
) -> tuple[npt.NDArray[np.float32], list[str]]:
    """items x categories 0/1 matrix aligned with item codes, and the category names."""
    ids = [str(i) for i in item_ids]
    names = sorted({c for meta in metadata.values() for c in meta.get("categories", [])})
    col = {c: j for j, c in enumerate(names)}
    out = np.zeros((len(ids), len(names)), dtype=np.float32)
    for row, item in enumerate(ids):
        for c in metadata.get(item, {}).get("categories", []):
            out[row, col[c]] = 1.0
    return out, names
