"""Interactions: the one in-memory shape every training step works on.

Ids stay strings at the edges (files, stores, API) and become dense integer codes
inside training, so models work on numpy/scipy arrays without dictionaries.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt
from scipy import sparse


class DataError(ValueError):
    """Input data that cannot be used, with a sentence saying why."""


# Timestamps are unix seconds a datetime can show: 0001-01-01 to 9999-12-31 UTC.
MIN_TIMESTAMP = -62135596800
MAX_TIMESTAMP = 253402300799
_MAX_WEIGHT = float(np.finfo(np.float32).max)
_WEIGHT_RULE = "weights must be finite numbers"
_TIME_RULE = "timestamps must be unix seconds between the years 1 and 9999"


def _parse_float(text: str, col: str) -> float:
    """A decimal number as CSV writers write it: Python's own `1_000` digit grouping is not."""
    try:
        if "_" in text:
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise ValueError(f"column '{col}' has {text!r}, which is not a number") from None


def parse_weight(text: str, col: str) -> float:
    """One weight cell; NaN, infinities and values float32 cannot hold are a ValueError."""
    value = _parse_float(text, col)
    if not (math.isfinite(value) and abs(value) <= _MAX_WEIGHT):
        raise ValueError(f"column '{col}' has {text!r}, but {_WEIGHT_RULE}")
    return value


def parse_timestamp(text: str, col: str) -> int:
    """One timestamp cell (unix seconds, fractions dropped) within the representable years."""
    value = _parse_float(text, col)
    if not (math.isfinite(value) and MIN_TIMESTAMP <= value <= MAX_TIMESTAMP):
        raise ValueError(f"column '{col}' has {text!r}, but {_TIME_RULE}")
    return int(value)


def checked_weights(values: npt.ArrayLike, col: str, source: str) -> npt.NDArray[np.float32]:
    """A weight column as float32; a missing, non-finite or huge value is a DataError."""
    w = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(w) | (np.abs(w) > _MAX_WEIGHT)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{source}, row {row + 1}: column '{col}' has {w[row]}, but {_WEIGHT_RULE}")
    return w.astype(np.float32)


def checked_timestamps(values: npt.ArrayLike, col: str, source: str) -> npt.NDArray[np.int64]:
    """A timestamp column (unix seconds) as int64; missing or out-of-range values are a
    DataError."""
    t = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(t) | (t < MIN_TIMESTAMP) | (t > MAX_TIMESTAMP)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{source}, row {row + 1}: column '{col}' has {t[row]:.15g}, but "
                        f"{_TIME_RULE}")
    return t.astype(np.int64)


def csv_rows(fh: TextIO, path: Path, required: Sequence[str]
             ) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header and (line number, row) pairs of a CSV; the required columns must be in the
    header, and bad UTF-8, a malformed line or a row with too few fields is a DataError."""
    reader = csv.DictReader(fh)

    def read_next() -> dict[str, str] | None:
        try:
            return next(reader, None)
        except UnicodeDecodeError:
            raise DataError(f"{path} is not UTF-8 text; save it with UTF-8 encoding") from None
        except csv.Error as exc:
            raise DataError(f"{path}, line {reader.line_num + 1}: {exc}") from None

    first = read_next()
    header = list(reader.fieldnames or [])
    for col in required:
        if col not in header:
            raise DataError(f"{path}: column '{col}' not found; header is {header}")

    def rows(row: dict[str, str] | None) -> Iterator[tuple[int, dict[str, str]]]:
        while row is not None:
            if None in row.values():
                raise DataError(f"{path}, line {reader.line_num}: expected {len(header)} "
                                "comma-separated fields, found fewer")
            if None in row:  # DictReader's key for the fields past the header's
                raise DataError(f"{path}, line {reader.line_num}: expected {len(header)} "
                                "comma-separated fields, found more (quote an id that "
                                "contains a comma)")
            yield reader.line_num, row
            row = read_next()

    return header, rows(first)


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays of (user, item, weight, timestamp) with their id vocabularies."""

    user_ids: npt.NDArray[np.str_]  # code -> external id
    item_ids: npt.NDArray[np.str_]
    users: npt.NDArray[np.int32]  # one entry per interaction
    items: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float32]
    timestamps: npt.NDArray[np.int64]  # unix seconds; 0 when the source had none
    source: str = field(default="")

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    def matrix(self, binary: bool = False) -> sparse.csr_matrix:
        """User x item matrix; repeated pairs are summed (or set to 1 when binary)."""
        data = np.ones(len(self), dtype=np.float32) if binary else self.weights
        m = sparse.csr_matrix(
            (data, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def _pair_keys(self) -> npt.NDArray[np.int64]:
        """One integer per row naming its (user, item) pair."""
        return self.users.astype(np.int64) * max(self.n_items, 1) + self.items

    def one_row_per_pair(self) -> Interactions:
        """One row per (user, item): its strongest weight and its latest time (a view then a
        purchase of the same item). Splits of the raw rows could put one pair on both sides,
        and an item the model has already seen can never be a hit: validation went blind."""
        if len(self) == 0:
            return self
        key = self._pair_keys()
        order = np.lexsort((self.timestamps, key))
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        if starts.size == len(self):
            return self
        last = np.r_[starts[1:], len(self)] - 1  # the latest row of each pair
        strongest = np.maximum.reduceat(self.weights[order], starts)
        return Interactions(
            self.user_ids, self.item_ids, self.users[order][last], self.items[order][last],
            strongest.astype(np.float32), self.timestamps[order][last], self.source,
        )

    def positive(self) -> Interactions:
        """The likes, same vocabularies: rows with a weight above 0 of pairs whose latest row
        is one too. A weight of 0 or below is a dislike (a thumbs-down, a 0-star rating):
        nothing to learn a taste from or to count as a hit, and it undoes the pair's earlier
        likes (a view, then a dislike), though never a later one. Its item is still never
        recommended to that user."""
        disliked = self.weights <= 0
        if not disliked.any():
            return self
        key = self._pair_keys()
        order = np.lexsort((np.arange(len(self)), self.timestamps, key))  # time, then file
        sorted_key = key[order]
        latest = np.r_[sorted_key[1:] != sorted_key[:-1], True]
        undone = np.isin(key, sorted_key[latest & disliked[order]])
        return self.subset(~disliked & ~undone)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Interactions:
        """Rows selected by mask, keeping the same vocabularies (codes stay comparable)."""
        return Interactions(
            self.user_ids,
            self.item_ids,
            self.users[mask],
            self.items[mask],
            self.weights[mask],
            self.timestamps[mask],
            self.source,
        )

    @staticmethod
    def from_columns(
        users: list[str] | npt.NDArray[np.str_],
        items: list[str] | npt.NDArray[np.str_],
        weights: list[float] | npt.NDArray[np.floating] | None = None,
        timestamps: list[int] | npt.NDArray[np.integer] | None = None,
        source: str = "",
    ) -> Interactions:
        u = np.asarray(users, dtype=str)
        i = np.asarray(items, dtype=str)
        if u.shape != i.shape:
            raise DataError("user and item columns have different lengths")
        if u.size == 0:
            raise DataError(f"no interactions found in {source or 'the input'}")
        user_ids, user_codes = np.unique(u, return_inverse=True)
        item_ids, item_codes = np.unique(i, return_inverse=True)
        w = np.ones(u.size, np.float32) if weights is None else np.asarray(weights, np.float32)
        t = np.zeros(u.size, np.int64) if timestamps is None else np.asarray(timestamps, np.int64)
        return Interactions(
            user_ids, item_ids, user_codes.astype(np.int32), item_codes.astype(np.int32), w, t,
            source,
        )


def read_csv(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    weight_col: str | None = "weight",
    time_col: str | None = "timestamp",
    require: Sequence[str] = (),
) -> Interactions:
    """Read a CSV with a header; weight and time columns are optional (used when present),
    except those in `require`.

    A MovieLens `u.data` file (tab separated, no header) is recognised by its name.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"interactions file not found: {p}")
    if p.name == "u.data":
        return read_movielens_100k(p)
    users: list[str] = []
    items: list[str] = []
    weights: list[float] = []
    times: list[int] = []
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name
    with p.open(newline="", encoding="utf-8-sig") as fh:
        header, rows = csv_rows(fh, p, (user_col, item_col, *require))
        has_w = weight_col is not None and weight_col in header
        has_t = time_col is not None and time_col in header
        for line_no, row in rows:
            try:
                user, item = row[user_col].strip(), row[item_col].strip()
                if not user or not item:
                    raise ValueError(f"an empty '{user_col if not user else item_col}' cell; "
                                     "every row needs a user and an item id")
                users.append(user)
                items.append(item)
                if has_w:
                    weights.append(parse_weight(row[str(weight_col)], str(weight_col)))
                if has_t:
                    times.append(parse_timestamp(row[str(time_col)], str(time_col)))
            except ValueError as exc:
                raise DataError(f"{p}, line {line_no}: {exc}") from exc
    return Interactions.from_columns(
        users, items, weights if has_w else None, times if has_t else None, source=str(p)
    )


def read_movielens_100k(path: str | Path) -> Interactions:
    """MovieLens 100K `u.data`: user \\t item \\t rating \\t timestamp, no header."""
    p = Path(path)
    if p.is_dir():
        p = p / "u.data"
    if not p.is_file():
        raise DataError(f"MovieLens file not found: {p}")
    try:
        with warnings.catch_warnings():  # numpy warns of an empty file: said below instead
            warnings.simplefilter("ignore", UserWarning)
            raw = np.loadtxt(p, dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError as exc:  # a non-integer cell (numpy names its row and column), bad bytes
        raise DataError(f"{p}: expected tab-separated integers ({str(exc).rstrip('.')})") from None
    if raw.size == 0:
        raise DataError(f"no interactions found in {p}")
    if raw.shape[1] != 4:
        raise DataError(f"{p}: expected 4 tab-separated columns, found {raw.shape[1]}")
    return Interactions.from_columns(
        raw[:, 0].astype(str), raw[:, 1].astype(str), raw[:, 2].astype(np.float32),
        checked_timestamps(raw[:, 3], "timestamp", str(p)), source=str(p),
    )
