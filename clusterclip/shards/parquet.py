"""``parquet``: one row per sample, ``input_ids`` list<int32>, ``doc_id`` int64, ``cluster`` int32,
``repeat`` int32; zstd-compressed ``part-NNNNNN.parquet`` files readable by pyarrow, polars,
DuckDB or ``datasets.load_dataset("parquet", data_files=sorted(glob))``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..artifacts import temp_file_beside
from .base import FormatWriter, ShardPlan, file_record, sha256_of


def schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("input_ids", pa.list_(pa.int32())),
            pa.field("doc_id", pa.int64()),
            pa.field("cluster", pa.int32()),
            pa.field("repeat", pa.int32()),
        ]
    )


class ParquetWriter(FormatWriter):
    name = "parquet"
    pattern = "part-*.parquet"

    def __init__(self, out_dir: Path, *, vocab_size: int, eos_id: int):
        super().__init__(out_dir, vocab_size=vocab_size, eos_id=eos_id)
        self._writer = None
        self._tmp = None

    def files(self, k: int) -> list[Path]:
        return [self.dir / f"part-{k:06d}.parquet"]

    def is_done(self, plan: ShardPlan, sizes: np.ndarray) -> bool:
        import pyarrow.parquet as pq

        path = self.files(plan.index)[0]
        if not path.is_file():
            return False
        try:
            return pq.read_metadata(path).num_rows == plan.samples
        except Exception:  # noqa: BLE001 - a damaged file is simply rewritten
            return False

    def begin(self, plan: ShardPlan, sizes: np.ndarray) -> None:
        import pyarrow.parquet as pq

        path = self.files(plan.index)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file_beside(path)
        os.close(fd)
        self._path, self._tmp = path, tmp
        # no dictionary for the token column: 3-5x faster to write, and large vocabularies
        # overflow the dictionary page anyway; statistics only on the small columns
        self._writer = pq.ParquetWriter(str(self._tmp), schema(), compression="zstd", use_dictionary=False,
                                        write_statistics=["doc_id", "cluster", "repeat"])

    def write(self, tokens, sizes, doc_ids, clusters, repeats) -> None:
        import pyarrow as pa

        offsets = np.zeros(len(sizes) + 1, dtype=np.int32)
        offsets[1:] = np.cumsum(sizes)
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.asarray(tokens, dtype=np.int32)))
        table = pa.Table.from_arrays(
            [ids, pa.array(np.asarray(doc_ids, dtype=np.int64)), pa.array(np.asarray(clusters, dtype=np.int32)),
             pa.array(np.asarray(repeats, dtype=np.int32))],
            schema=schema(),
        )
        self._writer.write_table(table)

    def commit(self) -> list[dict]:
        import os

        self._writer.close()
        self._writer = None
        with open(self._tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, self._path)
        self._tmp = None
        return [file_record(self.out_dir, self._path, self._path.stat().st_size, sha256_of(self._path))]

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001
                pass
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def read_sample(out_dir: Path, record: dict, j: int, eos_id: int) -> np.ndarray:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(Path(out_dir) / record["files"][0]["path"])
    start = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if j < start + n:
            col = pf.read_row_group(g, columns=["input_ids"]).column("input_ids")
            return np.asarray(col[j - start].as_py(), dtype=np.int64)
        start += n
    raise IndexError(f"sample {j} not in {record['files'][0]['path']}")
