"""``--pack L``: rows of exactly ``L`` tokens cut from the ordered stream, for the row formats.

This is the layout of LLM Foundry's ``concat_tokens`` and of Hugging Face's ``group_texts``,
plus what those drop: each row keeps its document boundaries, so a trainer can build
intra-document attention masks. A row's columns:

- ``input_ids``: ``L`` tokens;
- ``cu_seqlens``: int32 ``[0, b1, ..., L]``, where each piece of a sample begins in the row and
  the row's length (flash-attention's ``cu_seqlens`` for one row);
- ``positions``: int64 order position of each piece (``order.parquet``'s row: its ``doc_id``,
  ``cluster`` and ``repeat``); -1 for the padding that fills the very last row;
- ``doc_ids``: int64 ``doc_id`` of each piece, -1 for padding.

A sample that does not fit the rest of a row continues in the next row (the next piece has
the same position). The final partial row is filled up to ``L`` with pad tokens (a piece with
position -1), so no token of the order is dropped. A sample with no tokens at all (an empty
document with no delimiter) has no piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Segments


@dataclass
class Rows:
    """Full rows cut from the stream: ``tokens`` ``[n, L]`` and per-row pieces as flat arrays
    (``piece_offsets[r]:piece_offsets[r + 1]`` are row ``r``'s pieces)."""

    tokens: np.ndarray
    piece_offsets: np.ndarray  # int64 [n + 1]
    cu_seqlens: np.ndarray  # int32 piece starts inside the row (without the final L)
    positions: np.ndarray
    doc_ids: np.ndarray
    samples_begun: int

    def __len__(self) -> int:
        return len(self.tokens)


class RowPacker:
    """Cuts the pieces handed to a writer into rows of ``L``, carrying the rest to the next call."""

    def __init__(self, length: int, dtype: np.dtype):
        self.length = int(length)
        self.dtype = dtype
        self._tokens = np.zeros(0, dtype=dtype)
        self._seg: np.ndarray = np.zeros((0, 4), dtype=np.int64)  # size, position, doc_id, begins

    def add(self, tokens: np.ndarray, segments: Segments) -> Rows:
        L = self.length
        new = np.stack([segments.sizes, segments.positions, segments.doc_ids, segments.begins.astype(np.int64)], 1)
        new = new[new[:, 0] > 0]
        toks = np.concatenate([self._tokens, np.asarray(tokens, dtype=self.dtype)])
        seg = np.concatenate([self._seg, new])
        n_rows = len(toks) // L
        used = n_rows * L
        seg_starts: np.ndarray = np.zeros(len(seg), dtype=np.int64)
        if len(seg) > 1:
            np.cumsum(seg[:-1, 0], out=seg_starts[1:])
        # sub-pieces: the pieces cut again at every row start
        cuts = np.union1d(seg_starts[seg_starts < used], np.arange(0, used, L, dtype=np.int64))
        which = np.searchsorted(seg_starts, cuts, side="right") - 1
        rows_of = cuts // L
        piece_offsets: np.ndarray = np.searchsorted(rows_of, np.arange(n_rows + 1), side="left").astype(np.int64)
        begun = int(np.count_nonzero((cuts == seg_starts[which]) & (seg[which, 3] == 1)))
        out = Rows(toks[:used].reshape(n_rows, L), piece_offsets, (cuts - rows_of * L).astype(np.int32),
                   seg[which, 1].copy(), seg[which, 2].copy(), begun)
        # carry the rest: the piece holding token ``used`` onwards, trimmed
        self._tokens = toks[used:]
        if len(self._tokens):
            k = int(np.searchsorted(seg_starts, used, side="right") - 1)
            rest = seg[k:].copy()
            cut = int(used - seg_starts[k])
            rest[0, 0] -= cut
            if cut:
                rest[0, 3] = 0  # a continuation does not begin its sample
            self._seg = rest
        else:
            self._seg = seg[:0]
        return out

    def pending(self) -> int:
        return len(self._tokens)
