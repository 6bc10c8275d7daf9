"""``megatron``: Megatron-LM ``IndexedDataset`` pairs (``shard_NNNNNN.bin`` + ``.idx``).

``.bin`` is the raw token stream (no header). ``.idx`` (little-endian) is
``b"MMIDIDX\\x00\\x00"``, uint64 version 1, uint8 dtype code (8 = uint16, 4 = int32),
uint64 sequence count N, uint64 document-index count N + 1, int32[N] sequence lengths,
int64[N] byte offsets into ``.bin``, int64[N + 1] document indices ``0, 1, ..., N`` (one
document per sequence). This is what ``megatron.core.datasets.indexed_dataset``'s
``IndexedDatasetBuilder`` writes with ``add_item`` + ``end_document`` per sample. With
``--pack`` a sample cut at a shard boundary is two sequences (one in each shard).
"""

from __future__ import annotations

import struct
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

INDEX_HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {("u", 2): 8, ("i", 4): 4}  # (kind, itemsize) -> Megatron DType code
CODE_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32,
               8: np.uint16}


def index_bytes(sizes: np.ndarray, dtype: np.dtype) -> bytes:
    n = len(sizes)
    pointers: np.ndarray = np.zeros(n, dtype="<i8")
    if n > 1:
        np.cumsum(np.asarray(sizes[:-1], dtype=np.int64) * dtype.itemsize, out=pointers[1:])
    return b"".join(
        [
            INDEX_HEADER,
            struct.pack("<Q", 1),
            struct.pack("<B", DTYPE_CODES[(dtype.kind, dtype.itemsize)]),
            struct.pack("<Q", n),
            struct.pack("<Q", n + 1),
            np.asarray(sizes, dtype="<i4").tobytes(),
            pointers.tobytes(),
            np.arange(n + 1, dtype="<i8").tobytes(),
        ]
    )


class MegatronFormat(SingleFileFormat):
    name = "megatron"
    rank = 30
    pattern = "shard_*.*"
    read_by = "Megatron-LM IndexedDataset (.bin + .idx, one sample per sequence)"
    supports_pack = True

    @classmethod
    def token_dtype(cls, vocab_size: int) -> np.dtype:
        """uint16 when every id fits, else int32 (Megatron has no uint32 code)."""
        return uint16_or(vocab_size, "<i4")

    def files(self, k: int) -> list[Path]:
        stem = self.dir / f"shard_{k:06d}"
        return [stem.with_suffix(".bin"), stem.with_suffix(".idx")]

    def begin(self, plan: ShardPlan) -> None:
        self._sizes: list[np.ndarray] = []
        self._open(plan)

    def write(self, tokens, segments) -> None:
        keep = segments.positions >= 0  # padding (the last --pack shard) is not a sequence
        sizes = segments.sizes[keep]
        if len(sizes) and int(sizes.max()) >= 2**31:
            raise ValueError("a Megatron sequence holds fewer than 2**31 tokens (int32 lengths)")
        n = int(sizes.sum())
        self.file.write(np.ascontiguousarray(tokens[:n], dtype=self.dtype))
        self._sizes.append(sizes)
        self._account(n, segments)

    def commit(self) -> list[dict]:
        bin_file, self._file = self.file, None
        idx_file = HashedFile(self.files(self._plan.index)[1])
        try:
            sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, np.int64)
            idx_file.write(index_bytes(sizes, self.dtype))
            # .bin first, .idx last: a shard is complete once its .idx exists
            bsize, bdigest = bin_file.commit()
            isize, idigest = idx_file.commit()
        except BaseException:
            bin_file.abort()
            idx_file.abort()
            raise
        return [
            file_record(self.out_dir, bin_file.path, bsize, bdigest),
            file_record(self.out_dir, idx_file.path, isize, idigest),
        ]

    def stored_tokens(self, plan: ShardPlan) -> int:
        """Only the samples' tokens: padding is not a sequence (and no --align-tokens here)."""
        return plan.tokens

    @classmethod
    def read_shard(cls, out_dir: Path, record: dict, index: dict) -> ShardContent:
        paths = [Path(out_dir) / f["path"] for f in record["files"]]
        dtype, _, pointers, _ = read_index(paths[1])
        tokens = np.fromfile(paths[0], dtype=np.dtype(dtype).newbyteorder("<"))
        return ShardContent(tokens, pointers // np.dtype(dtype).itemsize)


def read_index(idx_path: str | Path) -> tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray]:
    """Parse an ``.idx``: (token dtype, int32 lengths, int64 byte pointers, int64 document indices)."""
    data = Path(idx_path).read_bytes()
    if data[:9] != INDEX_HEADER:
        raise ValueError(f"{idx_path}: not a Megatron MMIDIDX index")
    (version,) = struct.unpack_from("<Q", data, 9)
    if version != 1:
        raise ValueError(f"{idx_path}: index version {version}, expected 1")
    (code,) = struct.unpack_from("<B", data, 17)
    n, n_docs = struct.unpack_from("<QQ", data, 18)
    off = 34
    lengths = np.frombuffer(data, dtype="<i4", count=n, offset=off)
    pointers = np.frombuffer(data, dtype="<i8", count=n, offset=off + 4 * n)
    docs = np.frombuffer(data, dtype="<i8", count=n_docs, offset=off + 12 * n)
    return np.dtype(CODE_DTYPES[code]), lengths, pointers, docs


FORMAT = MegatronFormat
