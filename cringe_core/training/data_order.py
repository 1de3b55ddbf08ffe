"""Seeded, resumable order in which training rows are consumed.

The order is a stream over epochs: epoch `e` is a permutation of the rows drawn from a
generator seeded with (seed, e), and the whole position in the data is the number of rows
consumed so far. A checkpoint stores that one integer, and a resumed run continues with
exactly the rows the uninterrupted run would have used.
"""

from __future__ import annotations

import torch


class DataOrder:
    def __init__(self, num_rows: int, seed: int, consumed: int = 0) -> None:
        if num_rows < 1:
            raise ValueError("cannot order an empty data set; it needs at least one row")
        self.num_rows = num_rows
        self.seed = seed
        self.consumed = consumed
        self._epoch = -1
        self._permutation: list[int] = []

    def _permutation_for(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._permutation = torch.randperm(self.num_rows, generator=generator).tolist()
            self._epoch = epoch
        return self._permutation

    @property
    def epoch(self) -> int:
        return self.consumed // self.num_rows

    def take(self, count: int) -> list[int]:
        """Return the next `count` row indices, crossing into the next epoch if needed."""
        indices = []
        for _ in range(count):
            epoch, offset = divmod(self.consumed, self.num_rows)
            indices.append(self._permutation_for(epoch)[offset])
            self.consumed += 1
        return indices
