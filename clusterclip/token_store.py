"""Each used document tokenized once, kept on disk, memory-mapped.

A token store is a directory::

    tokens.bin    every tokenized document's ids, concatenated in doc_id order (uint16 or uint32)
    offsets.npy   int64 [n_docs]: where each document starts in tokens.bin (in tokens)
    lengths.npy   int64 [n_docs]: its length in tokens, -1 for documents not tokenized
    meta.json     written last: the store is complete

While it is built, ``tokens.partial`` and ``docs.partial`` (int64 pairs doc_id, length) grow
batch by batch and ``progress.json`` records, after an fsync, how far they are valid; a rerun
truncates them there and goes on after the last finished document, so an interrupted
tokenization costs at most one batch. Memory stays bounded by one batch of texts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .artifacts import save_npy_atomic, write_json_atomic
from .errors import InputError, MismatchError
from .faults import checkpoint

STORE_VERSION = 1
META = "meta.json"
PROGRESS = "progress.json"
TOKENS = "tokens.bin"
TOKENS_PARTIAL = "tokens.partial"
DOCS_PARTIAL = "docs.partial"

#: a batch for ``encode_batch`` closes at this many documents or characters, whichever comes first
BATCH_DOCS = 4096
BATCH_CHARS = 8_000_000


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


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
        delimiters)``. Vectorised: one fancy-index read from the memory map, no Python loop per
        document.
        """
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        out_dtype = np.dtype(out_dtype or self.dtype)
        lens = np.asarray(self.lengths[doc_ids], dtype=np.int64)
        if len(lens) and lens.min() < 0:
            bad = int(doc_ids[np.argmax(lens < 0)])
            raise KeyError(f"doc_id {bad} was not tokenized into {self.path}")
        head = int(bos_id is not None)
        sizes = lens + head + int(eos_id is not None)
        total = int(sizes.sum())
        out_starts = np.zeros(len(sizes), dtype=np.int64)
        if len(sizes) > 1:
            np.cumsum(sizes[:-1], out=out_starts[1:])
        doc_starts = out_starts + head  # where each document's own tokens begin in the output
        src_starts = np.asarray(self.offsets[doc_ids], dtype=np.int64)
        # source index of every output token, as a running sum: +1 inside a document, a jump at
        # each document start (one pass, cheaper than np.repeat over many short segments);
        # delimiter slots are overwritten below (their source index may be past the end)
        src = np.ones(total, dtype=np.int64)
        if total:
            nonempty = lens > 0
            starts_ne = doc_starts[nonempty]
            shift = src_starts[nonempty] - starts_ne  # source index - output index, per document
            if len(starts_ne):
                src[starts_ne[1:]] = np.diff(shift) + 1
                src[: starts_ne[0]] = 0
                src[starts_ne[0]] = src_starts[nonempty][0]
                np.cumsum(src, out=src)
            else:
                src[:] = 0
        delim_at = []
        if head:
            delim_at.append(out_starts)
        if eos_id is not None:
            delim_at.append(doc_starts + lens)
        if total and delim_at:
            src[np.concatenate(delim_at)] = 0
        if self.n_tokens and total:
            np.clip(src, 0, self.n_tokens - 1, out=src)
            out = np.asarray(self.data[src]).astype(out_dtype, copy=False)
        else:
            out = np.empty(total, dtype=out_dtype)
        if head:
            out[out_starts] = bos_id
        if eos_id is not None:
            out[doc_starts + lens] = eos_id
        return out, sizes


def _tokenizer_record(tokenizer) -> dict:
    return tokenizer.describe() if hasattr(tokenizer, "describe") else {"repr": repr(tokenizer)}


def build_token_store(
    texts: Iterable[tuple[int, str]],
    n_docs: int,
    tokenizer,
    path: str | os.PathLike,
    *,
    progress: bool = True,
    batch_docs: int = BATCH_DOCS,
    batch_chars: int = BATCH_CHARS,
    total: int | None = None,
) -> TokenStore:
    """Tokenize ``texts`` (``(doc_id, text)`` pairs in ascending doc_id) into a store at ``path``.

    ``n_docs`` is the size of the doc_id space (documents not in ``texts`` get length -1).
    If ``path`` holds a finished store for the same tokenizer and ``n_docs`` it is reused
    as is (``texts`` is not read); an unfinished one is resumed after its last document.
    ``total`` (documents to come) only sizes the progress bar.
    """
    p = Path(path)
    tok_rec = _tokenizer_record(tokenizer)
    vocab_size = int(tokenizer.vocab_size)
    dtype = token_dtype(vocab_size)
    identity = {"version": STORE_VERSION, "n_docs": int(n_docs), "dtype": dtype.name,
                "vocab_size": vocab_size, "tokenizer": tok_rec}

    if (p / META).is_file():
        meta = json.loads((p / META).read_text("utf-8"))
        if {k: meta.get(k) for k in identity} == identity:
            return TokenStore.open(p)
        raise MismatchError(f"{p}: holds tokens of another tokenizer or corpus; delete it to rebuild")
    p.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- resume point
    done_docs, done_tokens, last_doc = 0, 0, -1
    prog_file = p / PROGRESS
    if prog_file.is_file():
        try:
            prog = json.loads(prog_file.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            prog = None
        if prog and prog.get("identity") == identity:
            done_docs, done_tokens, last_doc = int(prog["docs"]), int(prog["tokens"]), int(prog["last_doc"])
    tok_f = open(p / TOKENS_PARTIAL, "ab" if done_docs else "wb")
    doc_f = open(p / DOCS_PARTIAL, "ab" if done_docs else "wb")
    tok_f.truncate(done_tokens * dtype.itemsize)
    doc_f.truncate(done_docs * 16)
    tok_f.seek(0, os.SEEK_END)
    doc_f.seek(0, os.SEEK_END)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=done_docs if total else 0, unit="doc", desc="tokenize",
                   dynamic_ncols=True, leave=False)
    n_tok = done_tokens
    n_done = done_docs
    t0 = time.perf_counter()
    new_tokens = 0
    try:
        prev = last_doc
        for batch in _batches(texts, last_doc, n_docs, batch_docs, batch_chars):
            ids = [d for d, _ in batch]
            if ids[0] <= prev:
                raise ValueError(f"token store input must be in ascending doc_id order (got {ids[0]} after {prev})")
            prev = ids[-1]
            encoded = tokenizer.encode_batch([t for _, t in batch])
            lens = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
            flat = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(lens.sum()))
            if len(flat) and (flat.max() >= vocab_size or flat.min() < 0):
                raise InputError(f"{tok_rec.get('spec')}: produced token id {int(flat.max())} >= vocab_size {vocab_size}")
            tok_f.write(flat.astype(dtype).tobytes())
            doc_f.write(np.stack([np.asarray(ids, dtype=np.int64), lens], axis=1).tobytes())
            for f in (tok_f, doc_f):
                f.flush()
                os.fsync(f.fileno())
            n_tok += len(flat)
            n_done += len(batch)
            new_tokens += len(flat)
            write_json_atomic(prog_file, {"identity": identity, "docs": n_done, "tokens": n_tok, "last_doc": prev})
            checkpoint("schedule.tokens")
            if bar is not None:
                bar.update(len(batch))
                rate = new_tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix_str(f"{_si(n_tok)} tok, {_si(rate)} tok/s", refresh=False)
    finally:
        tok_f.close()
        doc_f.close()
        if bar is not None:
            bar.close()

    # ---------------------------------------------------------------- finish
    recs = np.fromfile(p / DOCS_PARTIAL, dtype=np.int64).reshape(-1, 2)
    lengths = np.full(n_docs, -1, dtype=np.int64)
    offsets = np.zeros(n_docs, dtype=np.int64)
    if len(recs):
        starts = np.zeros(len(recs), dtype=np.int64)
        np.cumsum(recs[:-1, 1], out=starts[1:])
        lengths[recs[:, 0]] = recs[:, 1]
        offsets[recs[:, 0]] = starts
    save_npy_atomic(p / "lengths.npy", lengths)
    save_npy_atomic(p / "offsets.npy", offsets)
    os.replace(p / TOKENS_PARTIAL, p / TOKENS)
    meta = dict(identity, n_tokens=int(n_tok), n_tokenized=int(len(recs)))
    write_json_atomic(p / META, meta)
    for name in (DOCS_PARTIAL, PROGRESS):
        try:
            (p / name).unlink()
        except FileNotFoundError:
            pass
    return TokenStore.open(p)


def _batches(texts: Iterable[tuple[int, str]], last_doc: int, n_docs: int, batch_docs: int,
             batch_chars: int) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    chars = 0
    for doc_id, text in texts:
        doc_id = int(doc_id)
        if doc_id <= last_doc:  # done before an interruption
            continue
        if not 0 <= doc_id < n_docs:
            raise ValueError(f"doc_id {doc_id} outside 0..{n_docs - 1}")
        if not isinstance(text, str):
            text = "" if text is None else str(text)  # a missing text is an empty document
        batch.append((doc_id, text))
        chars += len(batch[-1][1])
        if len(batch) >= batch_docs or chars >= batch_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"
