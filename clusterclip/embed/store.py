"""The embeddings of an ``embed`` directory as one ``[N, D]`` matrix: ``embeddings-*.npy`` parts, memory-mapped."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from ..errors import InputError, IntegrityError


class EmbeddingStore:
    """Read-only view of ``embeddings-*.npy`` parts as one ``[N, D]`` matrix (memory-mapped).

    At most :attr:`MAX_OPEN` parts are mapped at a time (least recently used closed first), so
    any number of parts stays within the open-file limit.
    """

    MAX_OPEN = 16

    def __init__(self, files: list[Path], rows: list[int] | None = None):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise InputError("no embeddings-*.npy files; run `clusterclip embed` first")
        shapes = []
        for f in self.files:
            shapes.append(npy_shape(f))
        dims = {s[1] for s in shapes if s[0]} or {shapes[0][1]}
        if len(dims) != 1:
            raise IntegrityError(f"{self.files[0].parent}: embeddings parts disagree on the dimension ({sorted(dims)}); "
                                 f"rerun `clusterclip embed`")
        self.dim = dims.pop()
        self.part_rows = [s[0] for s in shapes]
        if rows is not None and rows != self.part_rows:
            raise IntegrityError(f"{self.files[0].parent}: the parts hold {self.part_rows} rows, not {rows}")
        self.offsets = np.cumsum([0] + self.part_rows)
        self.n = int(self.offsets[-1])
        self._open: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def part(self, i: int) -> np.ndarray:
        arr = self._open.get(i)
        if arr is None:
            try:
                arr = np.load(self.files[i], mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise IntegrityError(f"{self.files[i]}: unreadable embeddings part ({e}); rerun `clusterclip embed`") from None
            self._open[i] = arr
            while len(self._open) > self.MAX_OPEN:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(i)
        return arr

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a float32 array (copied from the memory maps)."""
        out = np.empty((max(0, stop - start), self.dim), dtype=np.float32)
        first = int(np.searchsorted(self.offsets, start, side="right") - 1)
        pos = start
        for i in range(max(first, 0), len(self.files)):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            if lo >= stop:
                break
            a, b = max(pos, lo), min(stop, hi)
            if a < b:
                out[a - start : b - start] = self.part(i)[a - lo : b - lo]
                pos = b
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows at the given (any order) indices as float32."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for i in np.unique(part):
            sel = np.nonzero(part == i)[0]
            out[sel] = self.part(int(i))[rows[sel] - self.offsets[i]]
        return out

    def location(self, row: int) -> str:
        """``<part file>, row <r> (doc_id <row>)`` for error messages."""
        part = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return f"{self.files[part]}, row {row - int(self.offsets[part])} (doc_id {row})"

    def rows(self, start: int, stop: int) -> "EmbeddingRows":
        """Rows ``[start, stop)`` as a small picklable source (only the parts they lie in), for a task elsewhere."""
        i0 = int(np.searchsorted(self.offsets, start, side="right") - 1)
        i1 = max(i0 + 1, int(np.searchsorted(self.offsets, stop, side="left")))
        return EmbeddingRows(self.files[i0:i1], self.part_rows[i0:i1], int(self.offsets[i0]), start, stop)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": collections.OrderedDict()}  # memory maps are reopened where it lands


class EmbeddingRows:
    """Rows ``[a, b)`` of the embeddings as an assignment source (row 0 here is document ``a``)."""

    def __init__(self, files: list[Path], rows: list[int], base: int, a: int, b: int):
        self.store = EmbeddingStore(files, rows)
        self.shift, self.a = a - base, a
        self.n, self.dim = b - a, self.store.dim

    def __len__(self) -> int:
        return self.n

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.store.read(self.shift + start, self.shift + stop)

    def location(self, row: int) -> str:
        local = self.shift + row
        part = int(np.searchsorted(self.store.offsets, local, side="right") - 1)
        return f"{self.store.files[part]}, row {local - int(self.store.offsets[part])} (doc_id {self.a + row})"


def npy_shape(path: Path) -> tuple[int, int]:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, _ = read[version](f)
    except (OSError, ValueError) as e:
        raise IntegrityError(f"{path}: not a NumPy array file ({e}); rerun `clusterclip embed`") from None
    if len(shape) != 2:
        raise IntegrityError(f"{path}: expected a 2-D [n, dim] array, got shape {shape}; rerun `clusterclip embed`")
    return int(shape[0]), int(shape[1])
