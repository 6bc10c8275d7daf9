"""The embeddings of an ``embed`` directory as one ``[N, D]`` matrix: ``embeddings-*.npy`` parts, read by position."""

from __future__ import annotations

from io import FileIO
from pathlib import Path

import numpy as np

from ..errors import InputError, IntegrityError


class EmbeddingStore:
    """Read-only view of ``embeddings-*.npy`` parts as one ``[N, D]`` matrix.

    Rows are read from the files with positioned reads into the caller's array, never through a
    memory map: a reader holds what it asked for and nothing of the parts it has read (the pages a
    memory map touches count in the process's resident memory until it is unmapped, so reading every
    row of a 1 M x 256 store through maps kept 1 GB resident, and twice when two stores mapped the
    same parts). A file is open only during a call, so any number of parts stays within the
    open-file limit.
    """

    #: scattered rows (:meth:`take`) are read in spans of at most this many bytes ...
    SPAN_BYTES = 1 << 23
    #: ... and a gap of at most this many bytes between two wanted rows is read through rather than skipped
    GAP_BYTES = 1 << 16

    def __init__(self, files: list[Path], rows: list[int] | None = None):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise InputError("no embeddings-*.npy files; run `clusterclip embed` first")
        layouts = [npy_layout(f) for f in self.files]
        dims = {lay.dim for lay in layouts if lay.rows} or {layouts[0].dim}
        if len(dims) != 1:
            raise IntegrityError(f"{self.files[0].parent}: embeddings parts disagree on the dimension ({sorted(dims)}); "
                                 f"rerun `clusterclip embed`")
        self.dim = dims.pop()
        self.layouts = layouts
        self.part_rows = [lay.rows for lay in layouts]
        if rows is not None and rows != self.part_rows:
            raise IntegrityError(f"{self.files[0].parent}: the parts hold {self.part_rows} rows, not {rows}")
        self.offsets = np.cumsum([0] + self.part_rows)
        self.n = int(self.offsets[-1])

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a float32 array."""
        out: np.ndarray = np.empty((max(0, stop - start), self.dim), dtype=np.float32)
        first = int(np.searchsorted(self.offsets, start, side="right") - 1)
        for i in range(max(first, 0), len(self.files)):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            if lo >= stop:
                break
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                with open(self.files[i], "rb", buffering=0) as f:
                    self._read_rows(f, i, a - lo, b - lo, out[a - start : b - start])
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows at the given (any order, repeats allowed) indices as float32.

        The wanted rows are read in ascending order, in spans (:attr:`SPAN_BYTES` at most) that read through
        gaps of up to :attr:`GAP_BYTES` and skip longer ones, so a sparse sample reads little more than its rows.
        """
        rows = np.asarray(rows, dtype=np.int64)
        out: np.ndarray = np.empty((len(rows), self.dim), dtype=np.float32)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.n:
            raise IndexError(f"rows outside 0..{self.n - 1}")
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        part = np.asarray(np.searchsorted(self.offsets, wanted, side="right")) - 1
        local = wanted - self.offsets[part]
        row_bytes = self.dim * 4
        gap, span = max(1, self.GAP_BYTES // row_bytes), max(1, self.SPAN_BYTES // row_bytes)
        new_run = np.r_[True, (np.diff(local) > gap) | (np.diff(part) != 0)]
        run = np.cumsum(new_run) - 1
        start_of_run = local[new_run][run]
        key = run * (self.n // span + 2) + (local - start_of_run) // span  # a long run cut into spans
        cuts = np.flatnonzero(np.r_[True, np.diff(key) != 0, True])
        handle: tuple[int, FileIO] | None = None
        try:
            for a, b in zip(cuts[:-1], cuts[1:]):
                i = int(part[a])
                if handle is None or handle[0] != i:
                    if handle is not None:
                        handle[1].close()
                    handle = (i, open(self.files[i], "rb", buffering=0))
                lo, hi = int(local[a]), int(local[b - 1]) + 1
                block: np.ndarray = np.empty((hi - lo, self.dim), dtype=np.float32)
                self._read_rows(handle[1], i, lo, hi, block)
                out[order[a:b]] = block[local[a:b] - lo]
        finally:
            if handle is not None:
                handle[1].close()
        return out

    def _read_rows(self, f: FileIO, i: int, a: int, b: int, out: np.ndarray) -> None:
        """Rows ``a:b`` of part ``i`` (open as ``f``) into ``out`` (float32, C-contiguous, ``b - a`` rows)."""
        lay = self.layouts[i]
        buf = out if lay.dtype == np.float32 else np.empty((b - a, self.dim), dtype=lay.dtype)
        view = buf.data.cast("B")
        f.seek(lay.data_offset + a * self.dim * lay.dtype.itemsize)
        got = 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise IntegrityError(f"{self.files[i]}: ends before row {b - 1} (a truncated embeddings part); "
                                     f"rerun `clusterclip embed`")
            got += n
        if buf is not out:
            out[...] = buf

    def location(self, row: int) -> str:
        """``<part file>, row <r> (doc_id <row>)`` for error messages."""
        part = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return f"{self.files[part]}, row {row - int(self.offsets[part])} (doc_id {row})"

    def rows(self, start: int, stop: int) -> "EmbeddingRows":
        """Rows ``[start, stop)`` as a small picklable source (only the parts they lie in), for a task elsewhere."""
        i0 = min(int(np.searchsorted(self.offsets, start, side="right") - 1), len(self.files) - 1)
        i1 = max(i0 + 1, int(np.searchsorted(self.offsets, stop, side="left")))
        return EmbeddingRows(self.files[i0:i1], self.part_rows[i0:i1], int(self.offsets[i0]), start, stop)


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


class NpyLayout:
    """Where the rows of a 2-D ``.npy`` file are: ``rows`` x ``dim`` of ``dtype`` (C order) from ``data_offset``."""

    def __init__(self, rows: int, dim: int, dtype: np.dtype, data_offset: int):
        self.rows, self.dim, self.dtype, self.data_offset = rows, dim, dtype, data_offset


def npy_layout(path: Path) -> NpyLayout:
    """The header of an embeddings part (a 2-D float array in C order), or a one-line :class:`IntegrityError`."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran_order, dtype = read[version](f)
            offset = f.tell()
    except (OSError, ValueError) as e:
        raise IntegrityError(f"{path}: not a NumPy array file ({e}); rerun `clusterclip embed`") from None
    if len(shape) != 2:
        raise IntegrityError(f"{path}: expected a 2-D [n, dim] array, got shape {shape}; rerun `clusterclip embed`")
    if fortran_order or dtype.kind != "f" or dtype.hasobject:
        raise IntegrityError(f"{path}: not a C-ordered float array ({dtype}, fortran_order={fortran_order}); rerun "
                             f"`clusterclip embed`")
    return NpyLayout(int(shape[0]), int(shape[1]), dtype, offset)


def npy_shape(path: Path) -> tuple[int, int]:
    """``(rows, dim)`` of an embeddings part (its header checked)."""
    lay = npy_layout(path)
    return lay.rows, lay.dim
