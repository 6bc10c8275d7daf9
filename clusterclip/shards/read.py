"""Reading shards back through each format's own layout (``inspect``, ``verify`` and the tests)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import FORMATS
from .base import ShardContent
from .index import find_shards, read_index


def read_shard(out_dir: str | os.PathLike, fmt: str, record: dict, index: dict) -> ShardContent:
    """Shard ``record`` of ``fmt`` read back through its own layout (a one-line error if unreadable)."""
    with _one_line(out_dir):
        return FORMATS[fmt].read_shard(Path(out_dir), record, index)


class _one_line:
    """A reader's ValueError/OSError/... as one :class:`InputError` line."""

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def __enter__(self):
        return self

    def __exit__(self, exc_type, e, tb):
        if exc_type is not None and issubclass(exc_type, (ValueError, OSError, KeyError, IndexError)):
            raise InputError(f"{str(e).splitlines()[0] if str(e) else exc_type.__name__}; check it with "
                             f"`clusterclip verify {self.out_dir}`") from None
        return False


def read_sample(out_dir: str | os.PathLike, fmt: str, position: int, index: dict | None = None) -> np.ndarray:
    """Tokens of the sample at ``position`` (delimiters included), read back from ``fmt``'s files.

    The files are read as they are: :meth:`clusterclip.schedule.directory.ScheduleDir.read_sample`
    checks their sha256 first."""
    index = index or read_index(out_dir)
    parts = []
    for rec in find_shards(index, fmt, position):
        with _one_line(out_dir):
            parts.append(FORMATS[fmt].read_piece(Path(out_dir), rec, index, position))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def read_stream(out_dir: str | os.PathLike, fmt: str, index: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The whole stream of ``fmt`` (no look-ahead copies, no padding) and where each sample begins in it."""
    index = index or read_index(out_dir)
    tokens: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    pos = 0
    for rec in index["shards"][fmt]:
        c = read_shard(out_dir, fmt, rec, index)
        s = c.starts[1:] if rec.get("first_offset", 0) else c.starts
        starts.append(s + pos)
        tokens.append(np.asarray(c.tokens, dtype=np.int64))
        pos += len(c.tokens)
    if not tokens:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(tokens), np.concatenate(starts)
