"""Parquet (``.parquet``): rows are the file's row indices from 0 ("row N" in messages).

Only the text (and id) columns are read, row group by row group; a partition skips the row
groups it owns no row of without reading them.
"""

from __future__ import annotations

import bisect
from typing import Any, Iterable, Iterator

from ..errors import InputError, first_line
from .base import CorpusReader, Partitioning, ReadStats

BATCH_ROWS = 8192


class ParquetReader(CorpusReader):
    format = "parquet"
    display = "Parquet"
    suffixes = (".parquet",)
    compressible = False  # Parquet compresses internally

    def __init__(self, path, compression: str = ""):
        super().__init__(path, compression)
        self._pf = None

    def _file(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._pf is None:
            try:
                if self.path.stat().st_size == 0:
                    raise InputError(f"{self.path}: empty file; remove it or re-create it")
                self._pf = pq.ParquetFile(self.path)
            except (pa.ArrowException, OSError) as e:
                if isinstance(e, InputError):
                    raise
                raise InputError(f"{self.path}: not a valid Parquet file ({first_line(e)}); "
                                 f"re-create or re-download it") from None
        return self._pf

    def known_rows(self) -> int:
        return self._file().metadata.num_rows

    def _group_offsets(self) -> list[int]:
        pf = self._file()
        offsets = [0]
        for i in range(pf.num_row_groups):
            offsets.append(offsets[-1] + pf.metadata.row_group(i).num_rows)
        return offsets

    def check(self, text_column: str, id_column: str | None) -> None:
        import pyarrow as pa

        pf = self._file()
        schema = pf.schema_arrow
        names = schema.names
        if text_column not in names:
            raise InputError(f"{self.path}: no column {text_column!r} (columns: {', '.join(names[:20]) or 'none'}); "
                             f"pass --text-column with one of them")
        t = schema.field(text_column).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view"):
            raise InputError(f"{self.path}: column {text_column!r} has type {t}, not string; "
                             f"pass --text-column naming a text column")
        if id_column is not None:
            if id_column not in names:
                raise InputError(f"{self.path}: no column {id_column!r} (columns: {', '.join(names[:20])}); "
                                 f"pass --id-column with one of them or leave it out")
            it = schema.field(id_column).type
            if pa.types.is_nested(it) or pa.types.is_dictionary(it) and pa.types.is_nested(it.value_type):
                raise InputError(f"{self.path}: id column {id_column!r} has type {it}; ids must be strings or numbers")
        if pf.metadata.num_rows == 0:
            raise InputError(f"{self.path}: empty file (no rows); remove it or re-create it")

    def _batches(self, columns: list[str], groups: list[int]):
        """``(first row, record batch)`` of the given row groups; corrupt data is one line."""
        import pyarrow as pa

        pf = self._file()
        offsets = self._group_offsets()
        for rg in groups:
            row = offsets[rg]
            try:
                for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[rg], columns=columns):
                    yield row, batch
                    row += batch.num_rows
            except (pa.ArrowException, OSError) as e:
                raise InputError(f"{self.path}, row {row}: corrupt or truncated Parquet data ({first_line(e)}); "
                                 f"re-create or re-download the file") from None
            self.bytes_done += pf.metadata.row_group(rg).total_byte_size

    def _texts_of(self, column, first: int, text_column: str) -> list:
        """An arrow string column as Python strings, naming the row of invalid UTF-8."""
        try:
            return column.to_pylist()
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad data
            for j in range(len(column)):
                try:
                    column[j].as_py()
                except Exception:  # noqa: BLE001
                    raise InputError(f"{self.path}, row {first + j}: column {text_column!r} holds invalid UTF-8; "
                                     f"re-encode the text as UTF-8") from None
            raise InputError(f"{self.path}, row {first}: cannot read column {text_column!r} ({first_line(e)}); "
                             f"re-create the file") from None

    def documents(self, text_column: str, id_column: str | None, *, base_row: int = 0,
                  partition: Partitioning | None = None, stats: ReadStats) -> Iterator[tuple[int, str, object]]:
        self.check(text_column, id_column)
        pf = self._file()
        n_rows = pf.metadata.num_rows
        columns = [text_column] + ([id_column] if id_column is not None and id_column != text_column else [])
        offsets = self._group_offsets()
        groups = []
        for rg in range(pf.num_row_groups):
            lo, hi = base_row + offsets[rg], base_row + offsets[rg + 1]
            if partition is None or partition.owns_any(lo, hi):
                groups.append(rg)
            else:
                stats.other_partitions += hi - lo
                self.bytes_done += pf.metadata.row_group(rg).total_byte_size
        for first, batch in self._batches(columns, groups):
            texts = self._texts_of(batch.column(0), first, text_column)
            ids = batch.column(columns.index(id_column)).to_pylist() if id_column is not None else None
            for j, text in enumerate(texts):
                row = first + j
                if partition is not None and not partition.owns(base_row + row):
                    stats.other_partitions += 1
                    continue
                if text is None:
                    raise InputError(f"{self.path}, row {row}: column {text_column!r} is null; fill it or drop the row")
                if not text.strip():
                    stats.skip_empty(self.path, row)
                    continue
                stats.documents += 1
                yield row, text, (ids[j] if ids is not None else None)
        stats.rows += n_rows
        stats.per_file_rows.append(n_rows)

    def texts(self, rows: Iterable[int], text_column: str) -> Iterator[tuple[int, str]]:
        offsets = self._group_offsets()
        n_groups = len(offsets) - 1
        current_group = -1
        batches: Iterator[tuple[int, Any]] = iter(())  # (first row, record batch) of the group being read
        batch_first = 0
        batch_texts: list = []
        for row in rows:
            while not (batch_texts and batch_first <= row < batch_first + len(batch_texts)):
                rg = bisect.bisect_right(offsets, row) - 1
                if row < 0 or rg >= n_groups:
                    raise InputError(f"{self.path}, row {row}: beyond the end of the file; the file changed since "
                                     f"`embed`, rerun it")
                if rg != current_group:
                    current_group, batches = rg, self._batches([text_column], [rg])
                try:
                    batch_first, batch = next(batches)
                except StopIteration:  # pragma: no cover - rows ascend within the group
                    raise InputError(f"{self.path}, row {row}: missing; the file changed, rerun `embed`") from None
                batch_texts = self._texts_of(batch.column(0), batch_first, text_column)
            text = batch_texts[row - batch_first]
            if text is None:
                raise InputError(f"{self.path}, row {row}: column {text_column!r} is null; the file changed since "
                                 f"`embed`, rerun it")
            yield row, text


READER = ParquetReader
