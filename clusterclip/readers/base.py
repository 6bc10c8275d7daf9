"""What every corpus reader shares: the reader interface, the work partitioning, the row accounting."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable, Iterator

#: columns of docs.parquet that a user's id column may not be called
RESERVED_COLUMNS = ("doc_id", "source", "row", "n_chars")
#: the manifest lists this many skipped empty rows (file, row), the first ones in input order
EMPTY_ROWS_LISTED = 100


@dataclass(frozen=True)
class Partitioning:
    """Which rows one of ``count`` workers reads: blocks of ``block`` rows, round-robin.

    Rows are numbered over all input files together (in :func:`~clusterclip.readers.expand_inputs`
    order), counting every row or line, empty or not. Block ``b`` (rows ``b*block .. (b+1)*block-1``)
    belongs to partition ``b % count``. A partition skips the rows of the others without parsing them.
    """

    count: int = 1
    index: int = 0
    block: int = 1024

    @property
    def whole(self) -> bool:
        return self.count == 1

    def owns(self, row: int) -> bool:
        return (row // self.block) % self.count == self.index

    def owned_in(self, start: int, stop: int) -> int:
        """How many rows of ``[start, stop)`` are ours (exact, O(1))."""
        if stop <= start:
            return 0
        return _owned_before(stop, self) - _owned_before(start, self)

    def owns_any(self, start: int, stop: int) -> bool:
        return self.owned_in(start, stop) > 0


def batch_window(row: int, partition_block: int, window_docs: int) -> tuple[int, int]:
    """The batching window of the input row ``row`` (numbered over all input files, empty rows included).

    Windows are ``window_docs`` input rows, also cut at every ``partition_block`` boundary, so a
    window lies inside one partition's block: every partitioning of a job with the same
    ``--partition-block`` and ``--window-docs`` embeds each document in the same batch as a
    one-shot run, whatever ``--num-partitions`` and ``--part-docs``.
    """
    return row // partition_block, row // window_docs


def _owned_before(n: int, p: Partitioning) -> int:
    """Rows ``< n`` owned by partition ``p``."""
    full_blocks, rest = divmod(n, p.block)
    full_cycles, extra_blocks = divmod(full_blocks, p.count)
    owned = full_cycles * p.block + (p.block if p.index < extra_blocks else 0)
    if full_blocks % p.count == p.index:
        owned += rest
    return owned


@dataclass
class ReadStats:
    """The row accounting of one read: every row is a document, an empty skip, or another partition's.

    ``rows == documents + skipped_empty + other_partitions`` holds whenever a read went through
    every file (``complete``); :meth:`check` enforces it.
    """

    rows: int = 0  #: rows (Parquet) or lines (JSON lines) of every file read, all partitions
    documents: int = 0  #: documents yielded
    skipped_empty: int = 0  #: whitespace-only documents (and blank JSON lines) skipped
    other_partitions: int = 0  #: rows owned by other partitions (not parsed)
    complete: bool = False  #: every file was read to its end
    per_file_rows: list = field(default_factory=list)
    #: ``[file, row]`` of the first :data:`EMPTY_ROWS_LISTED` empty rows skipped
    empty_rows: list = field(default_factory=list)
    #: file -> its first :data:`EMPTY_ROWS_LISTED` empty rows (what an incremental run reuses per file)
    empty_by_file: dict = field(default_factory=dict)

    def skip_empty(self, source, row: int) -> None:
        """Count an empty (whitespace-only) row; the first ones are listed by file and row."""
        self.skipped_empty += 1
        if len(self.empty_rows) < EMPTY_ROWS_LISTED:
            self.empty_rows.append([str(source), int(row)])
        mine = self.empty_by_file.setdefault(str(source), [])
        if len(mine) < EMPTY_ROWS_LISTED:
            mine.append(int(row))

    def record(self) -> dict:
        return {"input_rows": self.rows, "documents": self.documents,
                "skipped": {"empty": self.skipped_empty, "empty_rows": list(self.empty_rows)},
                "other_partitions": self.other_partitions}

    def check(self, where: str) -> None:
        from ..errors import ClusterClipError

        if self.complete and self.rows != self.documents + self.skipped_empty + self.other_partitions:
            raise ClusterClipError(
                f"{where}: accounting failed: {self.rows} input rows but {self.documents} documents + "
                f"{self.skipped_empty} empty + {self.other_partitions} of other partitions; nothing was written. "
                f"This is a bug: please report it with the command")


class CorpusReader:
    """One corpus file. Subclasses: one per input format (see :mod:`clusterclip.readers`).

    ``check()`` validates cheaply (opens, not empty, has the columns); ``documents()`` streams
    ``(row, text, user_id)`` of the rows a partition owns; ``texts(rows)`` reads given rows back
    (ascending). Rows are numbered from 0 within the file.
    """

    format: ClassVar[str] = "?"
    display: ClassVar[str] = "?"  #: the format's name in messages
    #: file-name suffixes (before any .gz/.zst) this reader takes
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: whether .gz/.zst compression of the whole file is allowed
    compressible: ClassVar[bool] = True

    def __init__(self, path: Path, compression: str = ""):
        self.path = Path(path)
        self.compression = compression
        self.bytes_done = 0  #: file bytes consumed so far (for progress)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def known_rows(self) -> int | None:
        """The number of rows, when known without reading the file (Parquet metadata)."""
        return None

    def check(self, text_column: str, id_column: str | None) -> None:
        raise NotImplementedError

    def documents(self, text_column: str, id_column: str | None, *, base_row: int = 0,
                  partition: Partitioning | None = None, stats: ReadStats) -> Iterator[tuple[int, str, object]]:
        raise NotImplementedError

    def texts(self, rows: Iterable[int], text_column: str) -> Iterator[tuple[int, str]]:
        raise NotImplementedError
