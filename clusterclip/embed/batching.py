"""Batching for the encoder: which documents are batched together, length-sorted token-budget
batches, and sequence packing.

A model's arithmetic may round differently in another batch, so the documents batched together
are fixed by their input row numbers alone (:func:`batch_window`): never by the partition, the
part, a resume point or the engine's hand-over. Inside a window, batches and packing depend only
on the sequence lengths of that window.
"""

from __future__ import annotations

import numpy as np

from ..readers.base import batch_window  # noqa: F401 - where batching windows are defined


def padded_length(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def plan_batches(lengths: np.ndarray, batch_tokens: int, batch_size: int | None = None,
                 multiple: int = 1) -> list[np.ndarray]:
    """Sequence indices per batch: longest first, each batch within ``batch_tokens`` = longest × count."""
    order = np.argsort(-lengths, kind="stable")
    batches, i, n = [], 0, len(order)
    while i < n:
        longest = padded_length(int(lengths[order[i]]), multiple)
        size = max(1, batch_tokens // longest)
        if batch_size is not None:
            size = min(size, batch_size)
        batches.append(order[i : i + size])
        i += size
    return batches


def pack_rows(lengths: np.ndarray, multiple: int = 1) -> tuple[int, list[list[int]]]:
    """Pack sequences into rows as long as the longest one (first-fit decreasing): ``(row_len, rows)``."""
    row_len = padded_length(int(lengths.max()), multiple)
    order = np.argsort(-lengths, kind="stable")
    free: np.ndarray = np.empty(len(order), dtype=np.int64)
    rows: list[list[int]] = []
    for j in order:
        need = int(lengths[j])
        fits = np.flatnonzero(free[: len(rows)] >= need)  # empty while there is no row
        if len(fits):
            r = int(fits[0])
            rows[r].append(int(j))
            free[r] -= need
        else:
            rows.append([int(j)])
            free[len(rows) - 1] = row_len - need
    return row_len, rows


def prefix_is_enough(prefix: str, encoding) -> bool:
    """Whether tokenizing ``prefix`` surely gave the same first window as the whole text.

    True when the window is full (there are overflowing tokens) and a whitespace follows the
    window's last token inside the prefix: then the cut fell in a later word, which cannot
    change how the words inside the window were tokenized.
    """
    if not encoding.overflowing:
        return False
    end = None
    for k in range(len(encoding.ids) - 1, -1, -1):
        if not encoding.special_tokens_mask[k]:
            end = encoding.offsets[k][1]
            break
    if end is None:
        return False
    tail = prefix[end:]
    return any(ch.isspace() for ch in tail[:-1])  # whitespace strictly before the cut


def encode_prefixes(tokenizer, texts, clip_chars: int, max_chars: int, add_special_tokens: bool = True) -> list:
    """The encodings (truncated by ``tokenizer``'s truncation) of a prefix of each text: ``clip_chars``
    characters, grown ×4 up to ``max_chars`` until :func:`prefix_is_enough` (bounded memory per document)."""
    clipped = [t if len(t) <= clip_chars else t[:clip_chars] for t in texts]
    encs = tokenizer.encode_batch(clipped, add_special_tokens=add_special_tokens)
    for i, text in enumerate(texts):
        size = clip_chars
        while len(text) > size and not prefix_is_enough(clipped[i], encs[i]) and size < max_chars:
            size = min(4 * size, max_chars)
            clipped[i] = text[:size]
            encs[i] = tokenizer.encode(clipped[i], add_special_tokens=add_special_tokens)
    return encs


def split_text(text: str, piece_chars: int) -> list[str]:
    """``text`` cut into pieces of about ``piece_chars`` characters, at a whitespace where there is one
    in the last quarter of a piece (bounded memory for ``--long-docs chunk-mean`` on huge documents)."""
    if len(text) <= piece_chars:
        return [text]
    pieces, start, n = [], 0, len(text)
    while start < n:
        stop = min(n, start + piece_chars)
        if stop < n:
            lo = start + (3 * piece_chars) // 4
            cut = max(text.rfind(" ", lo, stop), text.rfind("\n", lo, stop))
            if cut > start:
                stop = cut
        pieces.append(text[start:stop])
        start = stop
    return pieces
