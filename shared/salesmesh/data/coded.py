"""Columns as codes into distinct values: every check runs once per distinct value.

A million-row sales file has a few thousand distinct dates, ids and quantities; parsing those
and mapping back with integer codes is what keeps validation within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

MISSING = -1

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True)
class Coded:
    """`uniques[codes[i]]` is row i's stripped text; code MISSING marks an empty cell."""

    codes: IntArray
    uniques: ObjectArray
    lines: IntArray  # 1-based file line of each row, for messages
    name: str = ""  # the column's name in the file, for examples
    label: str = ""  # how messages name it, e.g. "'Vendas' (sales)"

    @classmethod
    def from_cells(cls, cells: Any, lines: IntArray, name: str = "", label: str = "") -> Coded:
        """Code raw cells (str or NaN), stripping whitespace so ' 12 ' and '12' are one value."""
        codes, uniques = pd.factorize(np.asarray(cells, dtype=object))
        # Stripping can merge values and empty some; re-code the (few) uniques, not the rows.
        stripped = np.array([str(value).strip() or None for value in uniques], dtype=object)
        recodes, merged = pd.factorize(stripped)
        remap = np.append(recodes, MISSING).astype(np.intp)  # index -1 keeps MISSING missing
        return cls(remap[codes], np.asarray(merged, dtype=object), lines, name, label or repr(name))

    @classmethod
    def constant(cls, value: str, lines: IntArray, name: str) -> Coded:
        """Every row holds `value`: the stand-in for an id column the file does not have."""
        codes = np.zeros(len(lines), dtype=np.intp)
        return cls(codes, np.array([value], dtype=object), lines, name, repr(name))

    def subset(self, rows: IntArray, lines: IntArray) -> Coded:
        """The same column restricted to `rows`, whose file lines are `lines`."""
        return Coded(self.codes[rows], self.uniques, lines, self.name, self.label)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def missing(self) -> BoolArray:
        mask: BoolArray = self.codes == MISSING
        return mask

    def take(self, per_unique: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
        """Row values from one value per unique; `fill` for empty cells."""
        extended = np.append(per_unique, np.array([fill], dtype=per_unique.dtype))
        return extended[self.codes]

    def rows_where(self, unique_mask: BoolArray) -> IntArray:
        """Row positions whose unique value is flagged in `unique_mask`."""
        return np.flatnonzero(np.append(unique_mask, False)[self.codes])

    def first_rows(self, unique_mask: BoolArray, limit: int = 5) -> list[tuple[int, str]]:
        """(line, value) of the first rows holding flagged uniques, in file order."""
        rows = self.rows_where(unique_mask)[:limit]
        return [(int(self.lines[row]), str(self.uniques[self.codes[row]])) for row in rows]
