"""LabelSpace: label names <-> column ids, and label sets <-> sparse multi-hot rows.

Column order is fixed once and saved with a model. :meth:`LabelSpace.from_label_sets`
uses the order of a labels file when one is given (one name per line), else the names
sorted alphabetically, so the same data always gives the same columns.

Encoding builds the CSR arrays directly (never a dense N x C matrix), so 10^5 labels
and 10^6 items cost only memory proportional to the number of (item, label) pairs.

>>> space = LabelSpace.from_label_sets([("refund", "billing"), ("shipping",), ()])
>>> space.names
('billing', 'refund', 'shipping')
>>> y = space.encode([("refund", "billing"), ()])
>>> y.toarray().tolist()
[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
>>> space.decode(y[0].indices)
('billing', 'refund')
>>> y, unknown = space.encode([("refund", "gift")], unknown="ignore", return_unknown=True)
>>> unknown
Counter({'gift': 1})
>>> LabelSpace.from_json(space.to_json()) == space
True
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np
import scipy.sparse as sp

from labelcon.data.records import DataError, read_text, show


def read_labels_file(path: str | os.PathLike) -> list[str]:
    """Label names, one per line (blank lines skipped, names stripped); a repeated name is an error."""
    names: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        name = line.strip()
        if not name:
            continue
        if name in first_line:
            raise DataError(
                f"{path}, line {number}: expected each label once, got {name!r} again "
                f"(first on line {first_line[name]})"
            )
        first_line[name] = number
        names.append(name)
    if not names:
        raise DataError(f"{path}: expected one label name per line, got no names")
    return names


class LabelSpace:
    """An ordered set of label names; column ``i`` of an encoded matrix is ``names[i]``."""

    def __init__(self, names: Iterable[str]):
        names = tuple(names)
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"expected label names to be non-empty strings, got {show(name)}")
        self._index = {name: i for i, name in enumerate(names)}
        if len(self._index) != len(names):
            repeated = sorted(name for name, count in Counter(names).items() if count > 1)
            raise DataError(f"expected distinct label names, got repeats: {repeated[:10]}")
        self._names = names

    @classmethod
    def from_label_sets(
        cls, label_sets: Iterable[Iterable[str]], labels_file: str | os.PathLike | None = None
    ) -> LabelSpace:
        """The labels of ``label_sets``: in ``labels_file`` order when given (a label in the
        data but not in the file is an error), else sorted by name."""
        seen = set(chain.from_iterable(label_sets))
        if labels_file is None:
            return cls(sorted(seen))
        space = cls(read_labels_file(labels_file))
        missing = sorted(seen - space._index.keys())
        if missing:
            raise DataError(
                f"{labels_file}: expected every label of the data to be listed, got {len(missing)} label(s) "
                f"in the data that the file does not list: {missing[:10]}"
            )
        return space

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSpace) and self._names == other._names

    def __repr__(self) -> str:
        head = ", ".join(self._names[:5]) + (", ..." if len(self) > 5 else "")
        return f"LabelSpace({len(self)} labels: {head})"

    def index(self, name: str) -> int:
        """The column of ``name``."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"label {name!r} is not one of the {len(self)} labels of this space") from None

    def encode(
        self,
        label_sets: Sequence[Iterable[str]],
        unknown: str = "error",
        *,
        return_unknown: bool = False,
        source: str | None = None,
    ) -> sp.csr_matrix | tuple[sp.csr_matrix, Counter]:
        """Multi-hot float32 CSR matrix [len(label_sets), len(self)].

        ``unknown="error"``: a label outside the space raises :class:`DataError` naming it
        (and ``source``). ``unknown="ignore"``: such labels are dropped; with
        ``return_unknown=True`` the result is ``(matrix, Counter of dropped names)``.
        """
        if unknown not in ("error", "ignore"):
            raise ValueError(f"expected unknown='error' or 'ignore', got {unknown!r}")
        sets = [tuple(s) for s in label_sets]
        lengths = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        flat = list(chain.from_iterable(sets))
        ids = np.fromiter((self._index.get(name, -1) for name in flat), dtype=np.int64, count=len(flat))
        rows = np.repeat(np.arange(len(sets)), lengths)
        bad = np.flatnonzero(ids < 0)
        dropped: Counter = Counter(flat[i] for i in bad)
        if len(bad) and unknown == "error":
            first = bad[0]
            raise DataError(
                f"{source or 'label sets'}, item {rows[first] + 1}: expected labels of the label space "
                f"({len(self)} labels), got the unknown label {flat[first]!r} ({len(dropped)} unknown label(s) in all: "
                f"{sorted(dropped)[:10]}); pass unknown='ignore' to drop and count them"
            )
        keep = ids >= 0
        indptr = np.zeros(len(sets) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[keep], minlength=len(sets)), out=indptr[1:])
        matrix = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), ids[keep], indptr), shape=(len(sets), len(self))
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return (matrix, dropped) if return_unknown else matrix

    def decode(self, row_ids: Iterable[int]) -> tuple[str, ...]:
        """The names of the column ids ``row_ids`` (e.g. ``matrix[i].indices``)."""
        ids = [int(i) for i in row_ids]
        bad = next((i for i in ids if not 0 <= i < len(self)), None)
        if bad is not None:
            raise IndexError(f"expected label ids in [0, {len(self)}), got {bad}")
        return tuple(self._names[i] for i in ids)

    def to_json(self) -> dict:
        return {"names": list(self._names)}

    @classmethod
    def from_json(cls, obj: dict) -> LabelSpace:
        if not isinstance(obj, dict) or not isinstance(obj.get("names"), list):
            raise DataError(f'expected a label space as {{"names": [...]}}, got {show(obj)}')
        return cls(obj["names"])
