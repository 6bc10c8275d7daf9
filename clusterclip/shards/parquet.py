"""``parquet``: zstd-compressed ``parquet/part-NNNNNN.parquet`` files readable by pyarrow, polars,
DuckDB or ``datasets.load_dataset("parquet", data_files=sorted(glob))``.

One row per sample: ``input_ids`` list<int32>, ``doc_id`` int64, ``cluster`` int32, ``repeat`` int32.
With ``--pack L``: one row per ``L`` tokens of the stream, ``input_ids`` list<int32> (``L``),
``cu_seqlens`` list<int32>, ``positions`` list<int64>, ``doc_ids`` list<int64>
(see :mod:`clusterclip.shards.packing`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts.files import PendingFile
from .base import Segments, ShardContent, ShardFormat, ShardPlan, file_record, sha256_of
from .packing import RowPacker


def schema(packed: bool = False):
    import pyarrow as pa

    if packed:
        return pa.schema([
            pa.field("input_ids", pa.list_(pa.int32())),
            pa.field("cu_seqlens", pa.list_(pa.int32())),
            pa.field("positions", pa.list_(pa.int64())),
            pa.field("doc_ids", pa.list_(pa.int64())),
        ])
    return pa.schema([
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("doc_id", pa.int64()),
        pa.field("cluster", pa.int32()),
        pa.field("repeat", pa.int32()),
    ])


class ParquetFormat(ShardFormat):
    name = "parquet"
    rank = 60
    pattern = "part-*.parquet"
    read_by = "Hugging Face datasets, litdata, pyarrow, polars (one row per sample, or --pack rows)"
    supports_pack = True

    @classmethod
    def token_dtype(cls, vocab_size: int) -> np.dtype:
        return np.dtype("<i4")

    def __init__(self, out_dir, layout):
        super().__init__(out_dir, layout)
        self._writer = None
        self._tmp = None

    def files(self, k: int) -> list[Path]:
        return [self.dir / f"part-{k:06d}.parquet"]

    @property
    def writer(self):
        """The open shard's ``pyarrow.parquet.ParquetWriter`` (between ``begin`` and ``commit``)."""
        if self._writer is None:
            raise RuntimeError("parquet: no shard is open (write before begin)")
        return self._writer

    def begin(self, plan: ShardPlan) -> None:
        import pyarrow.parquet as pq

        path = self.files(plan.index)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending = PendingFile(path)
        self._path, self._tmp = path, self._pending.tmp
        self._rows = 0
        self._blocks: list[tuple[np.ndarray, Segments]] = []
        pack = self.layout.pack
        packed = bool(pack)
        self._packer = RowPacker(pack, self.dtype) if pack else None
        # no dictionary for the token column: 3-5x faster to write, and large vocabularies
        # overflow the dictionary page anyway; statistics only on the small columns
        stats = ["positions", "doc_ids"] if packed else ["doc_id", "cluster", "repeat"]
        self._writer = pq.ParquetWriter(str(self._tmp), schema(packed), compression="zstd", use_dictionary=False,
                                        write_statistics=stats)

    def write(self, tokens, segments) -> None:
        """One row group per piece (``segments.piece_end``): its blocks are gathered first, so the file
        does not depend on the block size."""
        self._blocks.append((tokens, segments))
        if segments.piece_end:
            blocks, self._blocks = self._blocks, []
            self._write_piece(np.concatenate([t for t, _ in blocks]) if len(blocks) > 1 else blocks[0][0],
                              Segments.concat([sg for _, sg in blocks]))

    def _write_piece(self, tokens, segments) -> None:
        import pyarrow as pa

        if self._packer is not None:
            rows = self._packer.add(tokens, segments)
            if not len(rows):
                return
            n, L = rows.tokens.shape
            ids = pa.FixedSizeListArray.from_arrays(pa.array(rows.tokens.reshape(-1).astype(np.int32)), L)
            ids = ids.cast(pa.list_(pa.int32()))
            offsets = pa.array(rows.piece_offsets.astype(np.int32))
            cu_offsets = pa.array((rows.piece_offsets + np.arange(n + 1)).astype(np.int32))
            cu = _with_row_length(rows.cu_seqlens, rows.piece_offsets, L)
            table = pa.Table.from_arrays([
                ids,
                pa.ListArray.from_arrays(cu_offsets, pa.array(cu)),
                pa.ListArray.from_arrays(offsets, pa.array(rows.positions)),
                pa.ListArray.from_arrays(offsets, pa.array(rows.doc_ids)),
            ], schema=schema(True))
            self.writer.write_table(table)
            self._rows += n
            self.written["tokens"] += int(rows.tokens.size)
            self.written["samples"] += rows.samples_begun
            return
        offsets = np.zeros(len(segments.sizes) + 1, dtype=np.int32)
        offsets[1:] = np.cumsum(segments.sizes)
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.asarray(tokens, dtype=np.int32)))
        table = pa.Table.from_arrays(
            [ids, pa.array(segments.doc_ids), pa.array(segments.clusters), pa.array(segments.repeats)],
            schema=schema(False),
        )
        self.writer.write_table(table)
        self._rows += len(segments.sizes)
        self._account(len(tokens), segments)

    def commit(self) -> list[dict]:
        if self._blocks:
            raise RuntimeError(f"{self._path}: the last block did not end a piece; this is a bug, please report it")
        if self._packer is not None and self._packer.pending():
            raise ValueError(f"{self._packer.pending()} tokens left over a whole --pack row")
        self.writer.close()
        self._writer = None
        self.last_rows = self._rows
        self._pending.commit()
        self._tmp = None
        return [file_record(self.out_dir, self._path, self._path.stat().st_size, sha256_of(self._path))]

    def abort(self) -> None:
        self._blocks = []
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001
                pass
            self._writer = None
        if self._tmp is not None:
            self._pending.abort()
            self._tmp = None

    @classmethod
    def read_piece(cls, out_dir: Path, record: dict, index: dict, position: int) -> np.ndarray:
        return _read_piece(Path(out_dir) / record["files"][0]["path"], record, position)

    @classmethod
    def read_shard(cls, out_dir: Path, record: dict, index: dict) -> ShardContent:
        import pyarrow.parquet as pq

        t = pq.read_table(Path(out_dir) / record["files"][0]["path"])
        if "cu_seqlens" in t.column_names:
            return packed_content(
                [np.asarray(x, dtype=np.int64) for x in t.column("input_ids").to_pylist()],
                [np.asarray(x, dtype=np.int64) for x in t.column("cu_seqlens").to_pylist()],
                [np.asarray(x, dtype=np.int64) for x in t.column("positions").to_pylist()],
            )
        ids = t.column("input_ids").combine_chunks()
        tokens = ids.values.to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = ids.offsets.to_numpy()
        return ShardContent(tokens, (offsets[:-1] - offsets[0]).astype(np.int64))


def _read_piece(path: Path, record: dict, position: int) -> np.ndarray:
    """:meth:`ParquetFormat.read_piece`: only the row groups that hold the sample are decoded."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    first_row = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def locate(row: int) -> tuple[int, int]:
        g = int(np.searchsorted(first_row, row, side="right")) - 1
        return g, row - int(first_row[g])

    if "cu_seqlens" not in pf.schema_arrow.names:  # one row per sample
        row = position - record["start"]
        if not 0 <= row < first_row[-1]:
            raise ValueError(f"{path}: {first_row[-1]} rows, no row for sample {position}")
        g, i = locate(row)
        ids = pf.read_row_group(g, columns=["input_ids"]).column(0).slice(i, 1).combine_chunks()
        return ids.values.to_numpy(zero_copy_only=False).astype(np.int64)
    # --pack rows: the small positions column says which rows hold a piece of the sample
    positions = pf.read(columns=["positions"]).column(0).combine_chunks()
    owner: np.ndarray = np.repeat(np.arange(len(positions)), np.diff(positions.offsets.to_numpy()))
    rows = np.unique(owner[positions.values.to_numpy(zero_copy_only=False) == position])
    pieces, groups = [], {}
    for row in rows.tolist():
        g, i = locate(row)
        if g not in groups:
            groups = {g: pf.read_row_group(g, columns=["input_ids", "cu_seqlens", "positions"])}
        t = groups[g]
        toks, cu, posn = (np.asarray(t.column(c)[i].as_py(), dtype=np.int64)
                          for c in ("input_ids", "cu_seqlens", "positions"))
        pieces += [toks[a:b] for a, b, p in zip(cu[:-1], cu[1:], posn) if p == position]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)


def _with_row_length(cu: np.ndarray, piece_offsets: np.ndarray, length: int) -> np.ndarray:
    """Insert ``length`` after each row's piece starts: ``[0, b1, ..., L]`` per row."""
    return np.insert(cu.astype(np.int32), piece_offsets[1:], np.int32(length))


def packed_content(rows_tokens, rows_cu, rows_positions) -> ShardContent:
    """The stream of packed rows without padding, and where each sample piece begins in it
    (pieces of one sample cut at a row boundary are one piece again)."""
    tokens: list[np.ndarray] = []
    starts: list[int] = []
    positions: list[int] = []
    pos = 0
    for toks, cu, posn in zip(rows_tokens, rows_cu, rows_positions):
        for a, b, p in zip(cu[:-1], cu[1:], posn):
            if p < 0:
                continue  # padding
            if not positions or positions[-1] != p:
                starts.append(pos)
                positions.append(p)
            tokens.append(toks[a:b])
            pos += int(b - a)
    flat = np.concatenate(tokens) if tokens else np.zeros(0, np.int64)
    return ShardContent(flat, np.asarray(starts, dtype=np.int64))


FORMAT = ParquetFormat
