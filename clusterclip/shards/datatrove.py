"""``datatrove``: datatrove's tokenized files, as nanotron's ``DatatroveFolderDataset`` reads them.

Each shard is ``datatrove/shard_NNNNNN.ds``, the raw little-endian token stream (uint16 for
vocabularies up to 65536 ids, ``token_size=2``; else uint32, ``token_size=4``), and
``shard_NNNNNN.ds.index``, uint64 cumulative document ends in tokens, one per piece (what
datatrove's ``TokenizedFile`` writes; its last entry is the file's token count). A sample
split by ``--align-tokens`` is two pieces; the look-ahead copy and padding form one last piece.

``DatatroveFileDataset`` reads windows of ``seq_len + 1`` tokens that do not overlap, so pass
``--align-tokens`` a multiple of ``seq_len + 1``: every window is then full, and the one extra
look-ahead token at the end of each file (a copy of the next file's first token) is the only
thing it skips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (
    HashedFile,
    ShardContent,
    ShardPlan,
    SingleFileFormat,
    file_record,
    uint16_or,
)


class DatatroveFormat(SingleFileFormat):
    name = "datatrove"
    rank = 50
    pattern = "shard_*.ds*"
    read_by = "nanotron / datatrove DatatroveFolderDataset (.ds + .ds.index)"
    supports_align = True
    supports_pack = True

    @classmethod
    def token_dtype(cls, vocab_size: int) -> np.dtype:
        return uint16_or(vocab_size, "<u4")

    def files(self, k: int) -> list[Path]:
        ds = self.dir / f"shard_{k:06d}.ds"
        return [ds, ds.with_name(ds.name + ".index")]

    def begin(self, plan: ShardPlan) -> None:
        self._open(plan)
        self._ends: list[np.ndarray] = []
        self._pos = 0

    def write(self, tokens, segments) -> None:
        self.file.write(np.ascontiguousarray(tokens, dtype=self.dtype))
        self._ends.append(self._pos + np.cumsum(segments.sizes, dtype=np.int64))
        self._pos += int(segments.sizes.sum())
        self._account(len(tokens), segments)

    def commit(self) -> list[dict]:
        ds, self._file = self.file, None
        idx = HashedFile(self.files(self._plan.index)[1])
        try:
            ends = np.concatenate(self._ends) if self._ends else np.zeros(0, np.int64)
            idx.write(ends.astype("<u8").tobytes())
            # .ds first, .index last: a shard is complete once its index exists
            dsize, ddigest = ds.commit()
            isize, idigest = idx.commit()
        except BaseException:
            ds.abort()
            idx.abort()
            raise
        return [file_record(self.out_dir, ds.path, dsize, ddigest), file_record(self.out_dir, idx.path, isize, idigest)]

    def describe(self) -> dict:
        return {"token_dtype": self.dtype.name, "token_size": self.dtype.itemsize}

    @classmethod
    def read_shard(cls, out_dir: Path, record: dict, index: dict) -> ShardContent:
        paths = [Path(out_dir) / f["path"] for f in record["files"]]
        dtype = np.dtype(index["format_info"]["datatrove"]["token_dtype"]).newbyteorder("<")
        tokens = np.fromfile(paths[0], dtype=dtype, count=record["tokens"])
        ends = np.fromfile(paths[1], dtype="<u8").astype(np.int64)
        if len(ends) == 0 or ends[-1] != record["tokens"] + record.get("overlap", 0) + record.get("pad", 0):
            raise ValueError(f"{paths[1]}: document ends do not cover {paths[0]}")
        starts = np.concatenate([[0], ends[:-1]])
        pieces = record["stop"] - record["start"]
        return ShardContent(tokens, starts[:pieces])


FORMAT = DatatroveFormat
