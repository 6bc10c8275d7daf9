"""``bin``: llm.c's token shard layout, read by llm.c (``llmc/dataloader.h``) and modded-nanogpt.

Each file ``bin/train_NNNNNN.bin`` is a 1024-byte header of 256 little-endian int32 (``[0]``
magic, ``[1]`` version, ``[2]`` number of tokens, the rest 0) followed by the tokens:

- vocabularies up to 65536 ids: magic 20240520, version 1, uint16 tokens (llm.c's GPT-2 layout,
  the only one llm.c's master branch and modded-nanogpt accept);
- larger vocabularies: magic 20240801, version 7, uint32 tokens (llm.c's Llama-3 layout).

A file stays under 2 GiB, header included (llm.c seeks with an ``int`` offset): at most
:func:`max_bin_tokens` tokens, 1,073,741,311 of 16 bits or 536,870,655 of 32 bits; ``write_shards``
lowers ``--shard-tokens`` to that.

llm.c reads ``(ntok - 1) // (B*T)`` windows of ``B*T + 1`` tokens per file and needs
``ntok >= B*T + 1``: ``--align-tokens B*T`` makes every file hold a multiple of ``B*T`` plus one
look-ahead token, so it reads every token (see :mod:`clusterclip.shards.plan`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..tokens.store import fits_uint16
from .base import ShardContent, ShardPlan, SingleFileFormat, delimiter_starts, uint16_or

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
GPT2 = (20240520, 1)
LLAMA3 = (20240801, 7)


#: llm.c's loader seeks with an ``int`` byte offset: a file stays below 2**31 bytes
MAX_FILE_BYTES = 2**31 - 1


def max_bin_tokens(vocab_size: int) -> int:
    """The most tokens a ``bin`` file holds for a vocabulary: below 2 GiB with its header."""
    return (MAX_FILE_BYTES - HEADER_BYTES) // BinFormat.token_dtype(vocab_size).itemsize


def header(n_tokens: int, vocab_size: int) -> bytes:
    magic, version = GPT2 if fits_uint16(vocab_size) else LLAMA3
    h: np.ndarray = np.zeros(HEADER_INTS, dtype="<i4")
    h[0], h[1], h[2] = magic, version, n_tokens
    return h.tobytes()


class BinFormat(SingleFileFormat):
    name = "bin"
    rank = 10
    pattern = "train_*.bin"
    read_by = "llm.c, modded-nanogpt (llm.c header + uint16/uint32 tokens)"
    supports_align = True
    supports_pack = True
    needs_delimiter_to_read = True

    @classmethod
    def token_dtype(cls, vocab_size: int) -> np.dtype:
        return uint16_or(vocab_size, "<u4")

    @classmethod
    def max_file_tokens(cls, vocab_size: int) -> int | None:
        return max_bin_tokens(vocab_size)

    def files(self, k: int) -> list[Path]:
        return [self.dir / f"train_{k:06d}.bin"]

    def begin(self, plan: ShardPlan) -> None:
        cap = max_bin_tokens(self.vocab_size)
        if plan.file_tokens > cap:
            raise ValueError(f"a bin file holds at most {cap:,} tokens of {self.dtype.itemsize * 8} bits (2 GiB, "
                             f"llm.c seeks with an int offset); this one would hold {plan.file_tokens:,}")
        self._open(plan).write(header(plan.file_tokens, self.vocab_size))

    def write(self, tokens, segments) -> None:
        self.file.write(np.ascontiguousarray(tokens, dtype=self.dtype))
        self._account(len(tokens), segments)

    def describe(self) -> dict:
        magic, version = GPT2 if fits_uint16(self.vocab_size) else LLAMA3
        return {"token_dtype": self.dtype.name, "magic": magic, "version": version, "header_bytes": HEADER_BYTES}

    @classmethod
    def read_shard(cls, out_dir: Path, record: dict, index: dict) -> ShardContent:
        path = Path(out_dir) / record["files"][0]["path"]
        tokens = np.asarray(read_bin(path)[: record["tokens"]])
        return ShardContent(tokens, delimiter_starts(tokens, index, record, str(path)))


def read_bin(path: str | Path) -> np.ndarray:
    """The tokens of one ``bin`` shard (memory-mapped), after checking its header like llm.c does."""
    path = Path(path)
    h = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if len(h) < 3:
        raise ValueError(f"{path}: shorter than the 1024-byte llm.c header")
    magic, version, n = int(h[0]), int(h[1]), int(h[2])
    if (magic, version) == GPT2:
        dtype = np.dtype("<u2")
    elif (magic, version) == LLAMA3:
        dtype = np.dtype("<u4")
    else:
        raise ValueError(f"{path}: bad llm.c magic/version {magic}/{version}")
    if path.stat().st_size != HEADER_BYTES + n * dtype.itemsize:
        raise ValueError(f"{path}: size does not match the {n} tokens its header announces")
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(n,))


FORMAT = BinFormat
