"""The owner of an ``embed`` directory: its layout, its writer and its reader.

Layout (SPEC §2)::

    docs.parquet            doc_id int64 (0..N-1), source string, row int64, n_chars int64 [, the user's id column]
    embeddings-00000.npy    float16/float32 [n, D], L2-normalised; in name order they align with docs.parquet
    manifest.json           settings, inputs (corpus files by sha256), outputs (sizes, sha256), statistics, accounting

:class:`EmbedWriter` builds one (in an :class:`~clusterclip.artifacts.OutputDir` build): parts
of ``part_docs`` documents, each journaled with its digests so a resumed run re-checks what it
keeps, then ``docs.parquet`` from the parts. :class:`EmbedDir` opens a finished one for the
steps downstream: the manifest checked, every file size-checked, and on request the digests
(:meth:`EmbedDir.verify`), the embeddings (:meth:`EmbedDir.store`) and the texts read back
from the corpus after checking its content (:meth:`EmbedDir.texts`).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..artifacts import atomic_path, file_record, save_npy_atomic, sha256_file, write_parquet_atomic
from ..artifacts.corpus import verify_files
from ..artifacts.directory import ArtifactDir
from ..artifacts.journal import Journal, files_intact
from ..errors import InputError, IntegrityError, MismatchError
from ..faults import checkpoint

DOCS_FILE = "docs.parquet"
PARTS_DIR = ".parts"
JOURNAL = "journal.jsonl"


def part_name(k: int) -> str:
    return f"embeddings-{k:05d}.npy"


def docs_part_name(k: int) -> str:
    return f"docs-{k:05d}.parquet"


def is_part_name(name: str) -> bool:
    return name.startswith("embeddings-") and name.endswith(".npy")


# --------------------------------------------------------------------------- embeddings
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
            shapes.append(_npy_shape(f))
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


def _npy_shape(path: Path) -> tuple[int, int]:
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


# --------------------------------------------------------------------------- reading a finished directory
class EmbedDir(ArtifactDir):
    """A finished ``embed`` directory, checked on opening (manifest, file sizes, document count)."""

    step = "embed"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.n_docs = int(self.statistics["n_docs"])
        self.dim = int(self.statistics["dim"])
        self.parts = sorted(r["path"] for r in self.manifest["outputs"] if is_part_name(r["path"]))
        self._check_docs_rows()
        self._store: EmbeddingStore | None = None
        self._corpus_checked = False

    def _check_docs_rows(self) -> None:
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(self.docs_file()).metadata.num_rows
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise IntegrityError(f"{self.docs_file()}: unreadable ({type(e).__name__}); rerun `clusterclip embed`") from None
        if rows != self.n_docs:
            raise IntegrityError(f"{self.docs_file()}: has {rows} rows but the manifest records n_docs={self.n_docs}; "
                                 f"rerun `clusterclip embed`")

    @classmethod
    def open(cls, path, *, verify: bool = False) -> "EmbedDir":
        return cls(path, verify=verify)

    @property
    def text_column(self) -> str:
        return self.settings["text_column"]

    @property
    def id_column(self) -> str | None:
        return self.settings.get("id_column")

    @property
    def corpus_files(self) -> list[dict]:
        return self.manifest["inputs"]["files"]

    # ------------------------------------------------------------------ embeddings
    def store(self) -> EmbeddingStore:
        if self._store is None:
            rows = self.statistics.get("part_rows")
            self._store = EmbeddingStore([self.path / p for p in self.parts], rows)
            if self._store.n != self.n_docs or (self._store.n and self._store.dim != self.dim):
                raise IntegrityError(f"{self.path}: the embeddings hold {self._store.n} x {self._store.dim} values but "
                                     f"the manifest says {self.n_docs} x {self.dim}; rerun `clusterclip embed`")
        return self._store

    # ------------------------------------------------------------------ documents
    def docs_file(self) -> Path:
        return self.path / DOCS_FILE

    def iter_docs(self, columns: list[str], batch_rows: int = 65536) -> Iterator:
        """Record batches of ``docs.parquet`` (its digest checked first)."""
        import pyarrow.parquet as pq

        self.verify({DOCS_FILE})
        pf = pq.ParquetFile(self.docs_file())
        if pf.metadata.num_rows != self.n_docs:
            raise IntegrityError(f"{self.docs_file()}: {pf.metadata.num_rows} rows but {self.n_docs} documents "
                                 f"recorded; rerun `clusterclip embed`")
        yield from pf.iter_batches(batch_size=batch_rows, columns=columns)

    def docs_table(self, columns: list[str] | None = None):
        """The whole ``docs.parquet`` (or ``columns`` of it) as a pyarrow table, its digest checked first."""
        import pyarrow.parquet as pq

        self.verify({DOCS_FILE})
        return pq.read_table(self.docs_file(), columns=columns)

    def docs_rows(self, doc_ids, columns: list[str]) -> dict[int, dict]:
        """``doc_id -> {column: value}`` for a few documents, reading only the row groups of ``docs.parquet`` that hold them."""
        pf = self.parquet(DOCS_FILE)
        wanted = np.unique(np.asarray(list(doc_ids), dtype=np.int64))
        out: dict[int, dict] = {}
        start = 0
        for rg in range(pf.num_row_groups):
            stop = start + pf.metadata.row_group(rg).num_rows
            lo, hi = np.searchsorted(wanted, [start, stop])
            if hi > lo:  # doc_id is the row number of docs.parquet (dense 0..N-1)
                table = pf.read_row_group(rg, columns=["doc_id", *columns])
                for doc_id in wanted[lo:hi]:
                    row = table.slice(int(doc_id) - start, 1).to_pylist()[0]
                    if row.pop("doc_id") != doc_id:
                        raise IntegrityError(f"{self.docs_file()}: row {int(doc_id)} does not hold doc_id {int(doc_id)} "
                                             f"(doc_id must be 0..N-1 in order); rerun `clusterclip embed --overwrite`")
                    out[int(doc_id)] = row
            start = stop
        return out

    def document(self, doc_id: int) -> dict:
        """``source``, ``row``, ``n_chars`` (and the user's id) of one document, from ``docs.parquet``."""
        import pyarrow.parquet as pq

        if not 0 <= doc_id < self.n_docs:
            raise InputError(f"{self.path}: doc_id {doc_id} is out of range (0..{self.n_docs - 1})")
        self.verify({DOCS_FILE})
        pf = pq.ParquetFile(self.docs_file())
        start = 0
        for g in range(pf.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if doc_id < start + rows:
                row = pf.read_row_group(g).slice(doc_id - start, 1).to_pylist()[0]
                row.pop("doc_id", None)
                return row
            start += rows
        raise IntegrityError(f"{self.docs_file()}: doc_id {doc_id} not found")  # pragma: no cover

    def check_corpus(self, *, rehash: bool = False, progress: bool = False) -> None:
        """Raise when a corpus file vanished or its content changed since ``embed`` read it."""
        if not self._corpus_checked or rehash:
            verify_files(self.corpus_files, self.manifest.get("corpus_stat"), step="embed", rehash=rehash,
                         progress=progress)
            self._corpus_checked = True

    def texts(self, doc_ids, *, rehash: bool = False, progress: bool = False) -> Iterator[tuple[int, str]]:
        """``(doc_id, text)`` for ascending ``doc_ids`` (repeats allowed), read back from the corpus (content checked first).

        Memory stays bounded: ``docs.parquet`` is read in batches and each corpus file forward once.
        """
        from ..readers import reader_for

        ids = np.asarray(doc_ids, dtype=np.int64).ravel()
        if ids.size == 0:
            return
        if ids.size > 1 and np.any(np.diff(ids) < 0):
            raise ValueError("doc_ids must be ascending")
        if ids[0] < 0 or ids[-1] >= self.n_docs:
            bad = int(ids[0] if ids[0] < 0 else ids[-1])
            raise MismatchError(f"{self.path}: doc_id {bad} is out of range (0..{self.n_docs - 1}); the downstream "
                                f"directory does not belong to this embed directory")
        self.check_corpus(rehash=rehash, progress=progress)
        text_column = self.text_column
        k, start = 0, 0
        current_source, cursor = None, None
        for batch in self.iter_docs(["source", "row"]):
            stop = start + batch.num_rows
            hi = int(np.searchsorted(ids, stop, side="left"))
            if hi > k:
                sources = batch.column(0)
                rows = batch.column(1).to_numpy()
                for doc_id in ids[k:hi]:
                    j = int(doc_id) - start
                    src = sources[j].as_py()
                    if src != current_source:  # documents of one source are contiguous in doc order
                        cursor = _RowCursor(reader_for(src), text_column)
                        current_source = src
                    yield int(doc_id), cursor.get(int(rows[j]))
                k = hi
            start = stop
            if k >= ids.size:
                return


class _RowCursor:
    """Forward-only access to one corpus file's texts by ascending row (a row may repeat)."""

    def __init__(self, reader, text_column: str):
        self.reader, self.text_column = reader, text_column
        self._pending: list[int] = []
        self._iter = None
        self.last_row, self.last_text = -1, None

    def get(self, row: int) -> str:
        if row == self.last_row:
            return self.last_text
        if row < self.last_row:
            raise ValueError(f"rows must ascend (got {row} after {self.last_row})")
        if self._iter is None:
            self._rows = _Feed()
            self._iter = self.reader.texts(self._rows, self.text_column)
        self._rows.next_row = row
        got_row, text = next(self._iter)
        self.last_row, self.last_text = got_row, text
        return text


class _Feed:
    """An endless iterator of rows whose next value is set just before it is pulled."""

    next_row: int = -1

    def __iter__(self):
        return self

    def __next__(self) -> int:
        return self.next_row


# --------------------------------------------------------------------------- writing
class EmbedWriter:
    """Writes an embed directory into a build directory: journaled parts, then ``docs.parquet``."""

    def __init__(self, build: Path, *, id_column: str | None, save_dtype: str):
        self.build = Path(build)
        self.parts_dir = self.build / PARTS_DIR
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.id_column = id_column
        self.save_dtype = save_dtype
        self.journal: list[dict] = []  # the entries of the parts written (or kept) so far
        self._log = Journal(self.parts_dir / JOURNAL)

    # ------------------------------------------------------------------ resume
    def resume(self) -> list[dict]:
        """Keep the parts a killed run finished whose files still match their journaled digests.

        Everything after the first missing or mismatching part is deleted. Returns the kept entries.
        """
        kept: list[dict] = []
        for k, e in enumerate(self._log.load()):
            if e.get("part") != k or not files_intact(self.build, [
                    {"path": part_name(k), "bytes": _size(self.build / part_name(k)), "sha256": e["embeddings_sha256"]},
                    {"path": f"{PARTS_DIR}/{docs_part_name(k)}", "bytes": _size(self.parts_dir / docs_part_name(k)),
                     "sha256": e["docs_sha256"]}]):
                break
            kept.append(e)
        self.journal = kept
        keep = {part_name(k) for k in range(len(kept))} | {docs_part_name(k) for k in range(len(kept))}
        for p in list(self.build.glob("embeddings-*.npy")) + list(self.parts_dir.glob("docs-*.parquet")):
            if p.name not in keep:
                p.unlink()
        for p in list(self.build.glob(".*.tmp")) + list(self.parts_dir.glob(".*.tmp")):
            p.unlink(missing_ok=True)
        (self.build / DOCS_FILE).unlink(missing_ok=True)
        self._log.rewrite(self.journal)
        return kept

    def resume_point(self) -> tuple[str, int] | None:
        """``(source, row)`` of the last document in the kept parts (None: nothing kept)."""
        import pyarrow.parquet as pq

        for k in range(len(self.journal) - 1, -1, -1):
            t = pq.read_table(self.parts_dir / docs_part_name(k), columns=["source", "row"])
            if t.num_rows:
                return t.column("source")[-1].as_py(), int(t.column("row")[-1].as_py())
        return None

    # ------------------------------------------------------------------ parts
    def write_part(self, k: int, embeddings: np.ndarray, sources, rows, n_chars, n_tokens, user_ids,
                   truncated: int = 0, dim: int | None = None, truncated_flags=None) -> dict:
        """Write part ``k`` (embeddings + its docs rows) and journal it; returns the journal entry.

        ``truncated_flags``: per document, whether it was cut at ``max_length`` (None: unknown), so
        that each corpus file's tallies can be recorded (what an incremental run reuses).
        """
        if k != len(self.journal):
            raise RuntimeError(f"internal error: part {k} written after {len(self.journal)} parts")
        if embeddings is None or len(embeddings) == 0:
            embeddings = np.zeros((0, dim or 0), dtype=np.float32)
        save_npy_atomic(self.build / part_name(k), np.ascontiguousarray(embeddings.astype(self.save_dtype)))
        if truncated_flags is None:
            truncated_flags = [False if not truncated else None] * len(embeddings)
        _write_docs_part(self.parts_dir / docs_part_name(k), sources, rows, n_chars, n_tokens, user_ids,
                         self.id_column, truncated_flags)
        entry = {"part": k, "docs": int(len(embeddings)), "tokens": int(np.sum(n_tokens)) if len(n_tokens) else 0,
                 "truncated": int(truncated), "embeddings_sha256": sha256_file(self.build / part_name(k)),
                 "docs_sha256": sha256_file(self.parts_dir / docs_part_name(k))}
        self.journal.append(entry)
        self._log.append(entry)
        checkpoint("embed.part")
        return entry

    def finish(self) -> tuple[list[dict], dict]:
        """Assemble ``docs.parquet``; return (file records of every output, totals)."""
        import pyarrow.parquet as pq

        n_parts = len(self.journal)
        paths = [self.parts_dir / docs_part_name(k) for k in range(n_parts)]
        id_type = None
        if self.id_column is not None:
            id_type = common_id_type([pq.read_schema(p).field(self.id_column).type for p in paths])
        writer = DocsWriter(self.build / DOCS_FILE, docs_schema(self.id_column, id_type))
        dim = 0
        ok = False
        per_source: dict[str, dict] = {}
        try:
            for k, p in enumerate(paths):
                t = pq.read_table(p)
                _tally_sources(per_source, t)
                shape = _npy_shape(self.build / part_name(k))
                if shape[0] != t.num_rows:
                    raise IntegrityError(f"{self.build / part_name(k)}: holds {shape[0]} rows but its docs part "
                                         f"{t.num_rows}; rerun with --overwrite")
                dim = max(dim, shape[1])
                writer.write(t.column("source").combine_chunks(), t.column("row").to_numpy(),
                             t.column("n_chars").to_numpy(),
                             t.column(self.id_column).combine_chunks() if self.id_column is not None else None)
            ok = True
        finally:
            writer.close(ok)
        records = [{"path": part_name(k), "bytes": (self.build / part_name(k)).stat().st_size,
                    "sha256": e["embeddings_sha256"]} for k, e in enumerate(self.journal)]
        records.append(file_record(self.build, DOCS_FILE))
        totals = {"n_docs": writer.doc_id, "dim": dim, "tokens": sum(e["tokens"] for e in self.journal),
                  "truncated": sum(e["truncated"] for e in self.journal), "parts": n_parts,
                  "part_rows": [e["docs"] for e in self.journal], "per_source": per_source}
        return records, totals


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else -1


def _tally_sources(per_source: dict, t) -> None:
    """Add one docs part's documents, tokens and truncated documents to the tallies of each source file."""
    import pyarrow.compute as pc

    if t.num_rows == 0:
        return
    has_flags = "truncated" in t.column_names
    if has_flags:
        t = t.set_column(t.column_names.index("truncated"), "truncated", pc.cast(t.column("truncated"), "int64"))
    aggs = [("row", "count"), ("n_tokens", "sum")] + ([("truncated", "sum"), ("truncated", "count")] if has_flags else [])
    table = t.group_by("source", use_threads=False).aggregate(aggs).to_pylist()
    first = {s: i for i, s in reversed(list(enumerate(t.column("source").to_pylist())))}
    for r in sorted(table, key=lambda r: first[r["source"]]):
        e = per_source.setdefault(r["source"], {"documents": 0, "tokens": 0, "truncated_docs": 0})
        e["documents"] += int(r["row_count"])
        e["tokens"] += int(r["n_tokens_sum"] or 0)
        known = has_flags and r["truncated_count"] == r["row_count"]
        if e["truncated_docs"] is not None and known:
            e["truncated_docs"] += int(r["truncated_sum"] or 0)
        else:
            e["truncated_docs"] = None


def _user_id_array(values: list):
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _write_docs_part(path: Path, sources, rows, n_chars, n_tokens, user_ids, id_column,
                     truncated_flags=None) -> None:
    import pyarrow as pa

    cols = {
        "source": sources if isinstance(sources, pa.Array) else pa.array(sources, type=pa.string()),
        "row": pa.array(rows, type=pa.int64()),
        "n_chars": pa.array(n_chars, type=pa.int64()),
        "n_tokens": pa.array(n_tokens, type=pa.int64()),
    }
    if truncated_flags is not None:
        cols["truncated"] = pa.array(list(truncated_flags), type=pa.bool_())
    if id_column is not None:
        cols[id_column] = user_ids if isinstance(user_ids, pa.Array) else _user_id_array(list(user_ids))
    write_parquet_atomic(path, pa.table(cols))


def common_id_type(types: list):
    """One Arrow type for the user's id column across parts: the shared one, else string."""
    import pyarrow as pa

    real = [t for t in types if not pa.types.is_null(t)]
    if not real:
        return pa.null() if types else pa.string()
    first = real[0]
    if all(t == first for t in real):
        return first
    return pa.string()


def docs_schema(id_column: str | None, id_type=None):
    import pyarrow as pa

    fields = [("doc_id", pa.int64()), ("source", pa.string()), ("row", pa.int64()), ("n_chars", pa.int64())]
    if id_column is not None:
        fields.append((id_column, id_type if id_type is not None else pa.string()))
    return pa.schema(fields)


class DocsWriter:
    """Write ``docs.parquet`` in slices (one row group per slice), atomically; byte-stable."""

    def __init__(self, path: Path, schema):
        import pyarrow.parquet as pq

        self.schema = schema
        self._ctx = atomic_path(path)
        tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        self.doc_id = 0

    def write(self, sources, rows, n_chars, user_ids=None) -> None:
        import pyarrow as pa

        n = len(rows)
        cols = [
            pa.array(np.arange(self.doc_id, self.doc_id + n, dtype=np.int64)),
            pa.array(sources, type=pa.string()) if not isinstance(sources, pa.Array) else sources.cast(pa.string()),
            pa.array(rows, type=pa.int64()),
            pa.array(n_chars, type=pa.int64()),
        ]
        if len(self.schema) == 5:
            cols.append(user_ids.cast(self.schema.field(4).type))
        self._writer.write_table(pa.Table.from_arrays(cols, schema=self.schema), row_group_size=max(n, 1))
        self.doc_id += n

    def close(self, ok: bool = True) -> None:
        self._writer.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
