"""A set of unit ids (file paths, shard paths) that stays small for data sets of millions.

A scan keeps three such sets: the units it has seen (a path listed twice is scanned once), the
units earlier runs finished (resume) and every unit of this run (the report's scope). As Python
sets of strings they cost about 200 bytes per file, so a loose-file data set of millions of
images would grow the scanner by hundreds of MiB. Here each id is a 64-bit BLAKE2b hash in a
sorted NumPy array: 8 bytes per unit, plus a small buffer of recent additions.

Two ids share a hash with probability about n²/2⁶⁵ (3·10⁻⁸ for a million units). The cost of
such a collision is an image left out of the report (taken as already done, or out of scope):
it is then in no keep-list either, so a collision can never make an image `allowed`. The hash
is keyed with a random key drawn by each process (the sets are never stored), so nobody who
reads this can name a file to collide with another one: without the key, finding a collision
is guesswork, not the 2³² hashes a birthday search on a public 64-bit hash would take.

NumPy is imported only once a set outgrows its buffer (or is counted or probed in bulk): the
file-by-file commands (`guard verify` on a folder) never do, and NumPy's import was a fifth of
`guard verify --no-watermark`'s start-up.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_BUFFER = 1 << 16  # recent additions kept in a Python set before they join the sorted array
_KEY = os.urandom(16)  # this process's; a set lives and dies in one process


def unit_hash(unit_id: str) -> int:
    raw = os.fsencode(unit_id)  # file names that are not valid UTF-8 included
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8, key=_KEY).digest(), "little")


class UnitSet:
    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._sorted: np.ndarray | None = None  # None until the first compaction
        self._recent: set[int] = set()
        self.update(ids)

    def add(self, unit_id: str) -> None:
        self._recent.add(unit_hash(unit_id))
        if len(self._recent) >= _BUFFER:
            self._compact()

    def update(self, ids: Iterable[str]) -> None:
        for unit_id in ids:
            self.add(unit_id)

    def __contains__(self, unit_id: object) -> bool:
        if not isinstance(unit_id, str):
            return False
        h = unit_hash(unit_id)
        if h in self._recent:
            return True
        if self._sorted is None:
            return False
        i = int(self._sorted.searchsorted(self._sorted.dtype.type(h)))
        return i < len(self._sorted) and int(self._sorted[i]) == h

    def __len__(self) -> int:
        return len(self._compact())

    def _compact(self) -> np.ndarray:
        import numpy as np

        if self._sorted is None:
            self._sorted = np.empty(0, np.uint64)
        if self._recent:
            recent = np.fromiter(self._recent, np.uint64, len(self._recent))
            self._sorted = np.union1d(self._sorted, recent)
            self._recent = set()
        return self._sorted

    def contains_each(self, ids: list[str]) -> np.ndarray:
        """Membership of every id at once (a report's unit column), as a boolean array."""
        import numpy as np

        done = self._compact()
        hashes = np.fromiter((unit_hash(i) for i in ids), np.uint64, len(ids))
        if not len(done):
            return np.zeros(len(ids), bool)
        pos = np.minimum(np.searchsorted(done, hashes), len(done) - 1)
        return done[pos] == hashes
