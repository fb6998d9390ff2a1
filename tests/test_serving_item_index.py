"""Item id -> code on the request path: the hashed index answers exactly as the dict does."""

from __future__ import annotations

import random

import numpy as np

from shared.serving.item_index import SMALL, ItemIndex


def _dict_codes(index: dict[str, int], items: list[str], unknown: int) -> list[int]:
    return [index.get(i, unknown) for i in items]


def test_codes_equal_the_dict_lookups_for_known_unknown_and_odd_ids() -> None:
    ids = [f"item{i}" for i in range(3000)] + ["é", "x" * 300, "", "a|b", "0"]
    index = {item: code for code, item in enumerate(ids)}
    unknown = len(ids)
    hashed = ItemIndex(index, unknown)
    rng = random.Random(5)
    for trial in range(300):
        items = rng.sample(ids, rng.randint(0, 120)) + [f"new{trial}"] * (trial % 3)
        rng.shuffle(items)
        codes = hashed.codes(items)
        assert codes.dtype == np.int64
        assert codes.tolist() == _dict_codes(index, items, unknown)


def test_short_lists_and_empty_catalogues_use_the_dict() -> None:
    index = {"a": 0, "b": 1}
    assert ItemIndex(index, 2).codes(["b", "z", "a"]).tolist() == [1, 2, 0]
    assert ItemIndex({}, 0).codes(["a"] * (SMALL + 4)).tolist() == [0] * (SMALL + 4)


def test_a_catalogue_with_colliding_hashes_falls_back_to_the_dict() -> None:
    class Colliding(str):
        def __hash__(self) -> int:
            return 42

    a, b = Colliding("a"), Colliding("b")
    index = {a: 0, b: 1, "c": 2}
    items = ["c", b, a, "d"] * SMALL
    assert ItemIndex(index, 3).codes(items).tolist() == [2, 1, 0, 3] * SMALL
