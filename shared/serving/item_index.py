"""Item id -> item code for a request's candidates, with few CPU cache misses.

A dict lookup misses the caches three or four times per id on a catalogue of tens of thousands
of items (hash slot, entry, key string, value int), and a request reaches it with cold caches
(it has just waited for Redis): ~0.6 µs an id, most of the request's mapping cost, measured
with bench/serve/profile_path.py. Here the ids' string hashes (64-bit SipHash, keyed per
process) are sorted once per version into one compact int64 array; a request hashes its ids
(strings it has just decoded, so in cache) and finds them all with one vectorised binary
search, without touching the catalogue's strings.

Equal hashes are taken for equal ids. Two catalogue ids sharing a hash are found when the index
is built (that version then uses the dict); an id outside the catalogue would borrow a code only
if its 64-bit keyed hash equalled a catalogue id's, a chance of about n_items / 2**64 per id
(checking each match against the stored id would cost as much as the dict lookup it replaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
SMALL = 16  # fewer ids than this: the dict, cheaper than numpy's per-call cost


class ItemIndex:
    """`codes(ids)`: each id's code in `index`, `unknown` for ids not in it."""

    def __init__(self, index: dict[str, int], unknown: int) -> None:
        self._dict = index
        self._unknown = unknown
        n = len(index)
        hashes = np.fromiter(map(hash, index), np.int64, n)
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._codes = np.fromiter(index.values(), np.int64, n)[order]
        # Two ids sharing a 64-bit hash (~n**2 / 2**65): the dict serves this version.
        self._usable = n > 0 and not bool(np.any(self._hashes[1:] == self._hashes[:-1]))

    def codes(self, items: Sequence[str]) -> IntArray:
        n = len(items)
        if n < SMALL or not self._usable:
            return np.fromiter(map(self._dict.get, items, repeat(self._unknown, n)), np.int64, n)
        wanted = np.fromiter(map(hash, items), np.int64, n)
        pos = self._hashes.searchsorted(wanted)
        codes = self._codes.take(pos, mode="clip")
        missing = self._hashes.take(pos, mode="clip") != wanted
        if missing.any():
            codes[missing] = self._unknown
        return codes
