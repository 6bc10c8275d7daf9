"""A finished token store: each used document's token ids, kept on disk, memory-mapped.

A token store is a directory::

    tokens.bin    every tokenized document's ids, concatenated in doc_id order (uint16 or uint32)
    offsets.npy   int64 [n_docs]: where each document starts in tokens.bin (in tokens)
    lengths.npy   int64 [n_docs]: its length in tokens, -1 for documents not tokenized
    meta.json     written last: the store is complete

This module owns that layout: :class:`TokenStore` reads it; it is written by
:func:`clusterclip.tokens.build.build_token_store` (tokenizing, resumable), by
:func:`merge_token_stores` (stores of consecutive doc_id ranges, e.g. built in Ray tasks) or by
:func:`union_token_stores` (stores of disjoint documents: a cached store extended by the documents
a later schedule needs, :mod:`clusterclip.tokens.cache`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..artifacts import save_npy_atomic, write_json_atomic
from ..artifacts.files import PendingFile, atomic_path
from ..errors import InputError

STORE_VERSION = 1
META = "meta.json"
TOKENS = "tokens.bin"
OFFSETS = "offsets.npy"
LENGTHS = "lengths.npy"
#: every file of a finished store (``meta.json`` is written last)
STORE_FILES = (TOKENS, OFFSETS, LENGTHS, META)


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16) if fits_uint16(vocab_size) else np.dtype(np.uint32)


def fits_uint16(vocab_size: int) -> bool:
    """Whether every token id of a vocabulary fits 16 bits: the one rule every 16/32-bit choice follows."""
    return vocab_size <= 1 << 16


class TokenStore:
    """Read-only view of a finished token store (see the module docstring)."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self.n_docs = int(meta["n_docs"])
        self.dtype = np.dtype(meta["dtype"])
        self.vocab_size = int(meta["vocab_size"])
        self.n_tokens = int(meta["n_tokens"])
        self.tokenizer = meta.get("tokenizer")
        self.lengths: np.ndarray = np.load(self.path / "lengths.npy", mmap_mode="r")
        self.offsets: np.ndarray = np.load(self.path / "offsets.npy", mmap_mode="r")
        if self.n_tokens:
            self.data: np.ndarray = np.memmap(self.path / TOKENS, dtype=self.dtype, mode="r", shape=(self.n_tokens,))
        else:
            self.data = np.zeros(0, dtype=self.dtype)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "TokenStore":
        p = Path(path)
        meta_file = p / META
        if not meta_file.is_file():
            raise InputError(f"{p}: not a finished token store (no {META}); rebuild it")
        meta = json.loads(meta_file.read_text("utf-8"))
        expected = 0 if meta["n_tokens"] == 0 else meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize
        actual = (p / TOKENS).stat().st_size if (p / TOKENS).exists() else 0
        if actual != expected:
            raise InputError(f"{p / TOKENS}: {actual} bytes, expected {expected}; delete {p} and rebuild it")
        return cls(p, meta)

    def __len__(self) -> int:
        return self.n_docs

    def has(self, doc_id: int) -> bool:
        return 0 <= doc_id < self.n_docs and int(self.lengths[doc_id]) >= 0

    def tokens(self, doc_id: int) -> np.ndarray:
        """The token ids of ``doc_id`` (a read-only view into the memory map)."""
        if not 0 <= doc_id < self.n_docs:
            raise IndexError(f"doc_id {doc_id} out of range 0..{self.n_docs - 1}")
        n = int(self.lengths[doc_id])
        if n < 0:
            raise KeyError(f"doc_id {doc_id} was not tokenized into {self.path}")
        start = int(self.offsets[doc_id])
        return self.data[start : start + n]

    def gather(self, doc_ids: np.ndarray, eos_id: int | None, out_dtype=None, *,
               bos_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``[bos_id] + tokens(d) + [eos_id]`` for each ``d`` in ``doc_ids``, concatenated.

        A delimiter that is ``None`` is left out. Returns ``(flat tokens, sample lengths incl.
        delimiters)``. Vectorised: one ``np.take`` from the memory map, no Python loop per
        document. The source index of output token ``t`` of sample ``i`` is ``t + shift[i]``
        (``shift``: where the document starts in the store minus where it starts in the output),
        built with ``np.repeat`` + one add (a running sum over the tokens costs 4x more); the
        delimiter slots point one token before or after their document (clipped into the store)
        and are overwritten. Callers that gather many tokens do it in blocks (``shards.plan``) so
        the int64 index stays in the CPU cache.
        """
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        out_dtype = np.dtype(out_dtype or self.dtype)
        lens = _plain(self.lengths)[doc_ids].astype(np.int64, copy=False)
        if len(lens) and lens.min() < 0:
            bad = int(doc_ids[np.argmax(lens < 0)])
            raise KeyError(f"doc_id {bad} was not tokenized into {self.path}")
        head = int(bos_id is not None)
        sizes = lens + head + int(eos_id is not None)
        ends = np.cumsum(sizes)
        total = int(ends[-1]) if len(ends) else 0
        out_starts = ends - sizes
        doc_starts = out_starts + head  # where each document's own tokens begin in the output
        if self.n_tokens and total:
            shift = _plain(self.offsets)[doc_ids].astype(np.int64, copy=False) - doc_starts
            src: np.ndarray = np.repeat(shift, sizes)
            src += np.arange(total, dtype=np.int64)
            out: np.ndarray = np.take(_plain(self.data), src, mode="clip")
            if out.dtype != out_dtype:
                out = out.astype(out_dtype)
        else:
            out = np.empty(total, dtype=out_dtype)
        if head:
            out[out_starts] = bos_id
        if eos_id is not None:
            out[doc_starts + lens] = eos_id
        return out, sizes


def _plain(a: np.ndarray) -> np.ndarray:
    """``a`` without the ``np.memmap`` subclass (same memory): indexing it skips memmap's per-call overhead."""
    return a.view(np.ndarray) if isinstance(a, np.memmap) else a


def tokenizer_record(tokenizer) -> dict:
    """The tokenizer's part of a token store's identity (what it encodes, not which backend runs it)."""
    if not hasattr(tokenizer, "describe"):
        return {"repr": repr(tokenizer)}
    try:  # the store's identity is its tokens: which backend encoded them is not part of it
        return tokenizer.describe(with_backend=False)
    except TypeError:  # a tokenizer-like object whose describe() takes no arguments
        return tokenizer.describe()


# --------------------------------------------------------------------------- merging stores (the second way in)
#: bytes copied at once when stores are merged
COPY_BLOCK = 64 << 20


def merge_token_stores(parts: list[tuple[Path, int, int]], n_docs: int, tokenizer, path: str | os.PathLike, *,
                       copy_all: Callable[[list[tuple[str, str, int]]], None] | None = None) -> TokenStore:
    """Stores of consecutive doc_id ranges -> one store at ``path`` in doc_id order (``meta.json`` last).

    ``parts``: ``(store path, first doc_id, stop doc_id)`` in ascending doc_id order, each store
    holding the local doc_ids ``0..stop - first``. ``copy_all(jobs)`` copies every
    ``(source tokens.bin, destination, byte offset)`` (default: here, one after another; an engine
    may run them in parallel with :func:`copy_into`). The merged store holds the bytes one
    :func:`build_token_store` over all the documents would.
    """
    p = Path(path)
    stores = [TokenStore.open(part) for part, _, _ in parts]
    dtype = stores[0].dtype
    n_tokens = [st.n_tokens for st in stores]
    lengths: np.ndarray = np.full(n_docs, -1, dtype=np.int64)
    offsets: np.ndarray = np.zeros(n_docs, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(n_tokens)]).astype(np.int64)
    for (_, start, stop), st, first in zip(parts, stores, starts):
        part_lengths = np.asarray(st.lengths)
        tokenized = part_lengths >= 0
        lengths[start:stop] = part_lengths
        offsets[start:stop][tokenized] = np.asarray(st.offsets)[tokenized] + first
    p.mkdir(parents=True, exist_ok=True)
    merged = PendingFile(p / TOKENS)
    try:
        with open(merged.tmp, "wb") as f:
            f.truncate(int(starts[-1]) * dtype.itemsize)
        jobs = [(str(Path(part) / TOKENS), str(merged.tmp), int(first) * dtype.itemsize)
                for (part, _, _), first, n in zip(parts, starts, n_tokens) if n]
        if copy_all is None:
            for job in jobs:
                copy_into(*job)
        else:
            copy_all(jobs)
        save_npy_atomic(p / "lengths.npy", lengths)
        save_npy_atomic(p / "offsets.npy", offsets)
        merged.commit()
    except BaseException:
        merged.abort()
        raise
    record = tokenizer_record(tokenizer) if hasattr(tokenizer, "describe") else stores[0].meta["tokenizer"]
    meta = {**stores[0].meta, "n_docs": int(n_docs), "tokenizer": record, "n_tokens": int(starts[-1]),
            "n_tokenized": int(np.count_nonzero(lengths >= 0))}
    write_json_atomic(p / META, meta)
    return TokenStore.open(p)


def copy_into(src: str, dst: str, offset: int) -> int:
    """Copy file ``src`` into ``dst`` at byte ``offset`` (kernel copy where the file system allows), fsynced."""
    size = os.path.getsize(src)
    done = 0
    with open(src, "rb") as fi, open(dst, "rb+") as fo:
        while done < size:
            try:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), min(COPY_BLOCK, size - done), done, offset + done)
            except OSError:
                fi.seek(done)
                fo.seek(offset + done)
                n = fo.write(fi.read(min(COPY_BLOCK, size - done)))
            if n <= 0:
                raise OSError(f"{src}: copy stopped at byte {done} of {size}")
            done += n
        os.fsync(fo.fileno())
    return done


# --------------------------------------------------------------------------- the union of stores (the third way in)
def union_token_stores(stores: list[TokenStore], path: str | os.PathLike) -> TokenStore:
    """Stores of one doc_id space holding disjoint documents -> one store at ``path`` holding all of them.

    The tokens are written in doc_id order, so ``tokens.bin``, ``offsets.npy`` and ``lengths.npy`` are the
    bytes one :func:`~clusterclip.tokens.build.build_token_store` over every document would write
    (``meta.json`` apart: its ``backend`` lists theirs). Each run of documents that lie one after the other
    in one store is one copy (no Python loop per document unless they alternate); ``meta.json`` last.
    """
    first = stores[0]
    for st in stores[1:]:
        if (st.n_docs, st.dtype, st.vocab_size) != (first.n_docs, first.dtype, first.vocab_size):
            raise ValueError(f"{st.path}: another doc_id space or vocabulary than {first.path}")
    lengths: np.ndarray = np.full(first.n_docs, -1, dtype=np.int64)
    source: np.ndarray = np.full(first.n_docs, -1, dtype=np.int64)
    for i, st in enumerate(stores):
        have = np.asarray(st.lengths) >= 0
        if np.any(have & (source >= 0)):
            raise ValueError(f"{st.path}: holds a document another store holds too")
        lengths[have] = np.asarray(st.lengths)[have]
        source[have] = i
    ids = np.flatnonzero(lengths >= 0)
    lens, src = lengths[ids], source[ids]
    old: np.ndarray = np.zeros(len(ids), dtype=np.int64)  # where each document starts in its own store
    for i, st in enumerate(stores):
        old[src == i] = np.asarray(st.offsets)[ids[src == i]]
    offsets: np.ndarray = np.zeros(first.n_docs, dtype=np.int64)
    offsets[ids] = np.cumsum(lens) - lens
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    with atomic_path(p / TOKENS) as tmp, open(tmp, "wb") as f:
        for a, b in _contiguous_runs(src, old, lens):
            st = stores[int(src[a])]
            _write_range(f, st.data, int(old[a]), int(old[b - 1] + lens[b - 1]))
    save_npy_atomic(p / LENGTHS, lengths)
    save_npy_atomic(p / OFFSETS, offsets)
    backends = [b for st in stores for b in str(st.meta.get("backend") or "").split("+") if b]
    meta = {**first.meta, "n_tokens": int(lens.sum()), "n_tokenized": len(ids),
            "backend": "+".join(dict.fromkeys(backends)) or None}
    write_json_atomic(p / META, meta)
    return TokenStore.open(p)


def _contiguous_runs(src: np.ndarray, old: np.ndarray, lens: np.ndarray) -> list[tuple[int, int]]:
    """``[a, b)`` of the documents (in doc_id order) that follow each other in one store's ``tokens.bin``."""
    if not len(src):
        return []
    cut = (src[1:] != src[:-1]) | (old[1:] != old[:-1] + lens[:-1])
    starts = np.concatenate([[0], np.flatnonzero(cut) + 1])
    ends = np.concatenate([starts[1:], [len(src)]])
    return list(zip(starts.tolist(), ends.tolist()))


def _write_range(f, data: np.ndarray, lo: int, hi: int) -> None:
    step = max(1, COPY_BLOCK // data.dtype.itemsize)
    for a in range(lo, hi, step):
        f.write(memoryview(np.ascontiguousarray(_plain(data)[a:min(hi, a + step)])))
