"""The owner of an ``embed`` directory: its layout and reading a finished one.

Layout (SPEC §2)::

    docs.parquet            doc_id int64 (0..N-1), source string, row int64, n_chars int64 [, the user's id column]
    embeddings-00000.npy    float16/float32 [n, D], L2-normalised; in name order they align with docs.parquet
    manifest.json           settings, inputs (corpus files by sha256), outputs (sizes, sha256), statistics, accounting

:class:`~clusterclip.embed.writer.EmbedWriter` builds one (:mod:`.writer`); the embeddings are
read through :class:`~clusterclip.embed.store.EmbeddingStore` (:mod:`.store`). :class:`EmbedDir`
opens a finished one for the
steps downstream: the manifest checked, every file size-checked, and on request the digests
(:meth:`EmbedDir.verify`), the embeddings (:meth:`EmbedDir.store`) and the texts read back
from the corpus after checking its content (:meth:`EmbedDir.texts`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..artifacts.corpus import verify_files
from ..artifacts.directory import ArtifactDir, open_parquet
from ..artifacts.manifest import MANIFEST, Stats, read_stats, written
from ..errors import InputError, IntegrityError, MismatchError
from .store import EmbeddingStore

DOCS_FILE = "docs.parquet"
PARTS_DIR = ".parts"
JOURNAL = "journal.jsonl"


PART_PREFIX, PART_SUFFIX = "embeddings-", ".npy"


def part_name(k: int) -> str:
    return f"{PART_PREFIX}{k:05d}{PART_SUFFIX}"


def part_files(directory: str | os.PathLike) -> list[Path]:
    """The embedding part files in ``directory`` (a build or a finished directory), in name order."""
    return sorted(p for p in Path(directory).glob(f"{PART_PREFIX}*{PART_SUFFIX}") if is_part_name(p.name))


def docs_part_name(k: int) -> str:
    return f"docs-{k:05d}.parquet"


def is_part_name(name: str) -> bool:
    return name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)


def after_incremental(emb: str | os.PathLike, cl: str | os.PathLike = "CL") -> str:
    """What to run after ``embed --incremental`` grew ``emb`` (the end of its summary and of the refusals of
    clusters made before it)."""
    return (f"`clusterclip cluster {emb} --assign-only {cl} --out NEW_CL` puts the new documents in those clusters, "
            f"or `clusterclip cluster {emb} --out NEW_CL` clusters everything anew; then schedule with NEW_CL")


@dataclass(frozen=True)
class EmbedStats(Stats):
    """An embed manifest's ``statistics`` (``embed``, ``merge``): written by those steps, read through
    :attr:`EmbedDir.stats` (see :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    n_docs: int  #: documents embedded (rows of docs.parquet)
    dim: int
    skipped_empty: int | None = written()  #: input rows without text (whitespace only)
    tokens: int | None = written()  #: tokens the encoder read (after truncation)
    truncated_docs: int | None = written()  #: documents cut at --max-length
    input_rows: int | None = written()  #: rows read from the corpus (of this partition)
    parts: int | None = written()  #: embedding part files
    part_rows: list[int] | None = written()  #: rows of each part (None: not recorded; the parts' headers say)
    merged_partitions: int | None = None  #: ``merge``: the partitions merged

    def what(self, settings: dict) -> str:
        return f"{self.n_docs} documents, dim {self.dim}"


# --------------------------------------------------------------------------- reading a finished directory
class EmbedDir(ArtifactDir):
    """A finished ``embed`` directory, checked on opening (manifest, file sizes, document count)."""

    step = "embed"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.stats = read_stats(EmbedStats, self.manifest, self.path / MANIFEST)
        self.n_docs = int(self.stats.n_docs)
        self.dim = int(self.stats.dim)
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

    def as_recorded(self, recorded: dict) -> "EmbedDir":
        """This directory as a downstream record names it (``{"path", "manifest_sha256"}``): itself, or, when
        ``embed --incremental`` grew it since, the generation of it that the run kept (when it is there)."""
        from ..artifacts.manifest import unchanged_upstream

        digest = recorded.get("manifest_sha256")
        if digest == self.record()["manifest_sha256"] or not self.grew_from(digest):
            return self
        kept = unchanged_upstream({"path": str(self.path), "manifest_sha256": digest})
        return EmbedDir(kept) if kept is not None else self

    def grew_from(self, manifest_sha256: str | None) -> bool:
        """Whether ``embed --incremental`` built this output from the one of that manifest digest (directly or
        through earlier incremental runs)."""
        return manifest_sha256 in self.lineage

    @property
    def lineage(self) -> list[str]:
        """The manifest digests of the outputs ``embed --incremental`` built this one from (oldest first; none when
        it was embedded from scratch)."""
        return list((self.info.extra.get("incremental") or {}).get("lineage") or [])

    @property
    def incremental_files(self) -> list[str]:
        """The corpus files the ``embed --incremental`` run that made this output embedded (new or changed since
        the output it grew from; none when it was embedded from scratch)."""
        return list((self.info.extra.get("incremental") or {}).get("embedded") or [])

    # ------------------------------------------------------------------ embeddings
    def store(self) -> EmbeddingStore:
        if self._store is None:
            rows = self.stats.part_rows
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

    def docs_columns(self) -> list[str]:
        """The column names of ``docs.parquet`` (its schema; the data is read, digest checked, by the readers above)."""
        return list(open_parquet(self.docs_file(), "embed").schema_arrow.names)

    def docs_rows(self, doc_ids, columns: list[str]) -> dict[int, dict]:
        """``doc_id -> {column: value}`` for a few documents, reading only the row groups of ``docs.parquet`` that hold them."""
        pf = self.parquet(DOCS_FILE)
        wanted = np.unique(np.asarray(list(doc_ids), dtype=np.int64))
        out: dict[int, dict] = {}
        start = 0
        for rg in range(pf.num_row_groups):
            stop = start + pf.metadata.row_group(rg).num_rows
            lo, hi = int(np.searchsorted(wanted, start)), int(np.searchsorted(wanted, stop))
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
                    if cursor is None or src != current_source:  # a source's documents are contiguous in doc order
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
        self._iter: Iterator[tuple[int, str]] | None = None
        self._rows = _Feed()
        self.last_row, self.last_text = -1, ""  # no row is -1: the text is never returned

    def get(self, row: int) -> str:
        if row == self.last_row:
            return self.last_text
        if row < self.last_row:
            raise ValueError(f"rows must ascend (got {row} after {self.last_row})")
        if self._iter is None:
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
