"""``bin``: llm.c's token shard layout, read by llm.c (``llmc/dataloader.h``) and modded-nanogpt.

Each file is a 1024-byte header of 256 little-endian int32 (``[0]`` magic, ``[1]`` version,
``[2]`` number of tokens, the rest 0) followed by the tokens:

- vocabularies up to 65536 ids: magic 20240520, version 1, uint16 tokens (llm.c's GPT-2 layout);
- larger vocabularies: magic 20240801, version 7, uint32 tokens (llm.c's Llama-3 layout).

A shard holds whole samples (document tokens + EOS), so every file starts at a document
boundary; trainers that read ``B*T+1`` windows drop less than one window per file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import HashedFile, ShardPlan, SingleFileWriter

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
GPT2 = (20240520, 1, np.dtype("<u2"))
LLAMA3 = (20240801, 7, np.dtype("<u4"))


def layout(vocab_size: int) -> tuple[int, int, np.dtype]:
    """(magic, version, token dtype) for a vocabulary."""
    return GPT2 if vocab_size <= 1 << 16 else LLAMA3


def header(n_tokens: int, vocab_size: int) -> bytes:
    magic, version, _ = layout(vocab_size)
    h = np.zeros(HEADER_INTS, dtype="<i4")
    h[0], h[1], h[2] = magic, version, n_tokens
    return h.tobytes()


class BinWriter(SingleFileWriter):
    name = "bin"
    pattern = "train_*.bin"

    def __init__(self, out_dir: Path, *, vocab_size: int, eos_id: int):
        super().__init__(out_dir, vocab_size=vocab_size, eos_id=eos_id)
        self.dtype = layout(vocab_size)[2]
        self._file: HashedFile | None = None

    def files(self, k: int) -> list[Path]:
        return [self.dir / f"train_{k:06d}.bin"]

    def expected_sizes(self, plan: ShardPlan, sizes: np.ndarray) -> list[int]:
        return [HEADER_BYTES + plan.tokens * self.dtype.itemsize]

    def begin(self, plan: ShardPlan, sizes: np.ndarray) -> None:
        if plan.tokens >= 2**31:
            raise ValueError("a bin shard holds fewer than 2**31 tokens (its header count is an int32)")
        self._file = HashedFile(self.files(plan.index)[0])
        self._file.write(header(plan.tokens, self.vocab_size))

    def write(self, tokens, sizes, doc_ids, clusters, repeats) -> None:
        self._file.write(np.ascontiguousarray(tokens, dtype=self.dtype))



def read_bin(path: str | Path) -> np.ndarray:
    """The tokens of one ``bin`` shard (memory-mapped), after checking its header like llm.c does."""
    path = Path(path)
    h = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if len(h) < 3:
        raise ValueError(f"{path}: shorter than the 1024-byte llm.c header")
    magic, version, n = int(h[0]), int(h[1]), int(h[2])
    if (magic, version) == GPT2[:2]:
        dtype = GPT2[2]
    elif (magic, version) == LLAMA3[:2]:
        dtype = LLAMA3[2]
    else:
        raise ValueError(f"{path}: bad llm.c magic/version {magic}/{version}")
    if path.stat().st_size != HEADER_BYTES + n * dtype.itemsize:
        raise ValueError(f"{path}: size does not match the {n} tokens its header announces")
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(n,))


def read_sample(out_dir: Path, record: dict, j: int, eos_id: int) -> np.ndarray:
    """Sample ``j`` of a shard: the flat stream split after each EOS (EOS occurs only there)."""
    tokens = read_bin(Path(out_dir) / record["files"][0]["path"])
    ends = np.flatnonzero(tokens == eos_id)
    if j >= len(ends):
        raise IndexError(f"sample {j} not in {record['files'][0]['path']} ({len(ends)} samples)")
    start = 0 if j == 0 else int(ends[j - 1]) + 1
    return np.asarray(tokens[start : int(ends[j]) + 1])
