"""``raw``: headerless little-endian token streams (``raw/tokens_NNNNNN.bin``), uint16 for
vocabularies up to 65536 ids, else uint32.

The layout of nanoGPT's ``train.bin`` (``np.memmap(path, dtype=np.uint16)``; one file: pass a
``--shard-tokens`` above the total) and of OLMo-core's numpy token files (``NumpyFSLDataset``
with ``dtype`` uint16/uint32). Without ``--align-tokens`` the files concatenated (``cat``) are
exactly the stream; with it, each file but the last ends with a copy of the next file's first
token (see :mod:`clusterclip.shards.plan`). The dtype is recorded in ``shards.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ShardContent, ShardPlan, SingleFileFormat, delimiter_starts, uint16_or


class RawFormat(SingleFileFormat):
    name = "raw"
    rank = 20
    pattern = "tokens_*.bin"
    read_by = "nanoGPT train.bin, OLMo-core numpy datasets (headerless uint16/uint32)"
    supports_align = True
    supports_pack = True
    needs_delimiter_to_read = True

    @classmethod
    def token_dtype(cls, vocab_size: int) -> np.dtype:
        return uint16_or(vocab_size, "<u4")

    def files(self, k: int) -> list[Path]:
        return [self.dir / f"tokens_{k:06d}.bin"]

    def begin(self, plan: ShardPlan) -> None:
        self._open(plan)

    def write(self, tokens, segments) -> None:
        self.file.write(np.ascontiguousarray(tokens, dtype=self.dtype))
        self._account(len(tokens), segments)

    @classmethod
    def read_shard(cls, out_dir: Path, record: dict, index: dict) -> ShardContent:
        path = Path(out_dir) / record["files"][0]["path"]
        dtype = np.dtype(index["format_info"]["raw"]["token_dtype"]).newbyteorder("<")
        tokens = np.fromfile(path, dtype=dtype, count=record["tokens"])
        return ShardContent(tokens, delimiter_starts(tokens, index, record, str(path)))


FORMAT = RawFormat
