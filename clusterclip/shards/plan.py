"""Where the ordered token stream is cut into shards, and the pieces each shard receives.

The stream is every sample of the order (``BOS? + document tokens + EOS?``) concatenated.
Three ways to cut it, one per call (every format of the call gets the same cuts):

- by samples (default): greedy, a shard closes before the sample that would push it past
  ``shard_tokens``; a sample is never split (a sample longer than that gets a shard alone);
- ``align_tokens=W``: every shard holds ``C = max(1, shard_tokens // W) * W`` stream tokens
  plus one look-ahead token, the first token of the next shard repeated, so a loader that reads
  ``W + 1`` tokens and advances ``W`` (llm.c) sees the whole stream and the right target for
  its last position. The last shard is filled up to a multiple of ``W`` with pad tokens, and its
  look-ahead is a pad token too. Samples may span shards.
- ``pack=L``: every shard holds ``max(1, shard_tokens // L)`` rows of ``L`` tokens; the last row
  is filled up to ``L`` with pad tokens. Samples may span rows and shards.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from .base import Segments, ShardPlan, StreamLayout

#: order positions read at a time while planning
PLAN_CHUNK = 1 << 20
#: samples are grouped in pieces of about this many tokens: the Parquet row-group size, so it must
#: stay fixed for byte-identical reruns
PIECE_TOKENS = 1 << 22
#: ... and handed to the writers in blocks of about this many tokens (whole samples): the gather's
#: int64 index (8 bytes a token) stays in the CPU cache, and a writer's thread hashes and writes one
#: block while the next is gathered (:class:`~clusterclip.shards.base.HashedFile`)
BLOCK_TOKENS = 1 << 16
#: threads that gather the blocks ahead of the writers (0: the caller gathers each, the reference path;
#: also on one core, where they would only take turns)
GATHER_THREADS = 2 if (os.cpu_count() or 1) > 1 else 0


def sample_sizes(order_doc_ids, lengths, start: int, stop: int, delimiters: int = 1) -> np.ndarray:
    """Tokens of the samples at positions ``start:stop`` (document length + ``delimiters``)."""
    docs = np.asarray(order_doc_ids[start:stop], dtype=np.int64)
    if len(docs) and (docs.min() < 0 or docs.max() >= len(lengths)):
        bad = int(np.flatnonzero((docs < 0) | (docs >= len(lengths)))[0])
        raise InputError(f"order position {start + bad}: doc_id {int(docs[bad])} is not in the token store "
                         f"(0..{len(lengths) - 1}); rerun `clusterclip schedule --overwrite`")
    lens = np.asarray(lengths[docs], dtype=np.int64)
    if len(lens) and lens.min() < 0:
        bad = int(np.argmax(lens < 0))
        raise InputError(f"order position {start + bad}: doc_id {int(docs[bad])} was never tokenized; "
                         f"rerun `clusterclip schedule --overwrite`")
    return lens + delimiters


def total_tokens(order_doc_ids, lengths, delimiters: int = 1) -> int:
    """Tokens of the whole stream, summed chunk by chunk (independent of any plan)."""
    n = len(order_doc_ids)
    return sum(int(sample_sizes(order_doc_ids, lengths, a, min(n, a + PLAN_CHUNK), delimiters).sum())
               for a in range(0, n, PLAN_CHUNK))


def largest_sample(order_doc_ids, lengths, delimiters: int = 1) -> int:
    """Tokens of the longest sample of the stream (0 for an empty order)."""
    n = len(order_doc_ids)
    return max((int(sample_sizes(order_doc_ids, lengths, a, min(n, a + PLAN_CHUNK), delimiters).max())
                for a in range(0, n, PLAN_CHUNK)), default=0)


def plan_shards(order_doc_ids, lengths, shard_tokens: int, *, delimiters: int = 1,
                align_tokens: int | None = None, pack: int | None = None) -> list[ShardPlan]:
    """The shards of the stream (see the module docstring for the three ways to cut it).

    ``shard_tokens``, ``align_tokens`` and ``pack`` are as :class:`~clusterclip.schedule.ScheduleSettings`
    checked them (at least 1; not both of the last two).
    """
    if align_tokens or pack:
        unit = int(align_tokens or pack or 0)  # one of them is given here
        plans = _plan_by_tokens(order_doc_ids, lengths, shard_tokens, delimiters, unit,
                                overlap=1 if align_tokens else 0)
        total = sum(p.tokens for p in plans)
        if plans and unit > max(total, PIECE_TOKENS):  # padding larger than the data (it could fill the disk)
            flag = f"--align-tokens {unit}" if align_tokens else f"--pack {unit}"
            raise InputError(f"{flag}: longer than the whole stream ({total:,} tokens), which would be padded "
                             f"to {unit:,}; lower it to at most {total:,}, or plan a larger budget")
        return plans
    return _plan_by_samples(order_doc_ids, lengths, shard_tokens, delimiters)


def _plan_by_samples(order_doc_ids, lengths, shard_tokens: int, delimiters: int) -> list[ShardPlan]:
    """Greedy split into whole samples; vectorised: one ``searchsorted`` per shard."""
    plans: list[ShardPlan] = []
    n = len(order_doc_ids)
    cur_start, cur_tokens, start_token = 0, 0, 0

    def close(stop: int) -> None:
        nonlocal cur_start, cur_tokens, start_token
        plans.append(ShardPlan(len(plans), cur_start, stop, cur_tokens, start_token=start_token))
        start_token += cur_tokens
        cur_start, cur_tokens = stop, 0

    for chunk_start in range(0, n, PLAN_CHUNK):
        sizes = sample_sizes(order_doc_ids, lengths, chunk_start, min(n, chunk_start + PLAN_CHUNK), delimiters)
        cs = np.cumsum(sizes)
        i, m = 0, len(sizes)
        while i < m:
            base = int(cs[i - 1]) if i else 0
            j = int(np.searchsorted(cs, base + (shard_tokens - cur_tokens), side="right"))
            if j == i:  # the next sample does not fit
                if cur_tokens == 0:
                    j = i + 1  # oversized sample: a shard of its own
                else:
                    close(chunk_start + i)
                    continue
            cur_tokens += int(cs[j - 1]) - base
            i = j
            if i < m or cur_tokens >= shard_tokens:
                close(chunk_start + i)
    if cur_start < n:
        close(n)
    return plans


def _plan_by_tokens(order_doc_ids, lengths, shard_tokens: int, delimiters: int, unit: int,
                    overlap: int) -> list[ShardPlan]:
    """Shards of ``C = max(1, shard_tokens // unit) * unit`` stream tokens, the last one padded."""
    n = len(order_doc_ids)
    if n == 0:
        return []
    total = total_tokens(order_doc_ids, lengths, delimiters)
    per_shard = max(1, shard_tokens // unit) * unit
    n_shards = max(1, -(-total // per_shard))
    # for each cut k*C (k = 1..n_shards-1): the sample holding stream token k*C and its start
    first = [0]
    first_start = [0]
    k = 1
    offset = 0  # stream offset of the chunk's first sample
    for chunk_start in range(0, n, PLAN_CHUNK):
        sizes = sample_sizes(order_doc_ids, lengths, chunk_start, min(n, chunk_start + PLAN_CHUNK), delimiters)
        ends = offset + np.cumsum(sizes)
        while k < n_shards and len(ends) and k * per_shard < ends[-1]:
            i = int(np.searchsorted(ends, k * per_shard, side="right"))
            first.append(chunk_start + i)
            first_start.append(int(ends[i] - sizes[i]))
            k += 1
        offset = int(ends[-1]) if len(ends) else offset
    plans = []
    for k in range(n_shards):
        lo = k * per_shard
        hi = min(total, lo + per_shard)
        start = first[k]
        first_offset = lo - first_start[k]
        if k + 1 < n_shards:
            nxt, nxt_start = first[k + 1], first_start[k + 1]
            straddles = nxt_start < hi
            stop = nxt + 1 if straddles else nxt
            tail = 0
            if straddles:
                end_of_straddler = nxt_start + int(
                    sample_sizes(order_doc_ids, lengths, nxt, nxt + 1, delimiters)[0])
                tail = end_of_straddler - hi
            pad = 0
            extra = overlap
        else:
            stop, tail = n, 0
            own = hi - lo
            pad = max(unit, -(-own // unit) * unit) - own
            extra = overlap
        plans.append(ShardPlan(k, start, stop, hi - lo, first_offset=first_offset, tail=tail, overlap=extra,
                               pad=pad, start_token=lo))
    return plans


# --------------------------------------------------------------------------- feeding the writers
def stream_token(store, layout: StreamLayout, doc_id: int, offset: int) -> int:
    """Token ``offset`` of the sample of ``doc_id`` (delimiters included)."""
    if layout.bos_id is not None:
        if offset == 0:
            return int(layout.bos_id)
        offset -= 1
    n = int(store.lengths[doc_id])
    if offset < n:
        return int(store.tokens(doc_id)[offset])
    if layout.eos_id is None:
        raise IndexError(f"token {offset} of the sample of doc_id {doc_id}: past its end (no EOS)")
    return int(layout.eos_id)


class PlanLookup(Protocol):
    """The shard plans a writer looks up by index: all of them, or a task's own and the next (``shards.tasks``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> ShardPlan: ...


class OrderLookup(Protocol):
    """An order column indexed by absolute order position: the whole array, or a task's window of it."""

    def __getitem__(self, key: Any) -> Any: ...


def shard_pieces(plan: ShardPlan, plans: PlanLookup, order_doc_ids, order_cluster, order_repeat, store,
                 layout: StreamLayout, block_tokens: int | None = None) -> Iterator[tuple[np.ndarray, Segments]]:
    """The tokens of shard ``plan`` in blocks of about ``block_tokens`` (default :data:`BLOCK_TOKENS`), with
    their segments.

    Yields ``(tokens, segments)``: the samples ``plan.start:plan.stop`` (the first without its
    ``first_offset`` head, the last without its ``tail``), then the look-ahead copy and padding.
    The samples are grouped into pieces of about :data:`PIECE_TOKENS` (greedy, whole samples, at
    least one) and each piece into blocks of about ``block_tokens`` by the same rule; the last
    block of a piece has ``segments.piece_end`` set. The pieces depend on the plan alone, so a
    format whose layout follows them (Parquet row groups) is the same whatever the block size.
    :data:`GATHER_THREADS` threads gather the next blocks while the writers take this one.
    """
    block = int(block_tokens or BLOCK_TOKENS)
    sizes = sample_sizes(order_doc_ids, store.lengths, plan.start, plan.stop, layout.delimiters)
    cs = np.cumsum(sizes)
    m = len(sizes)
    cuts = [(a, b, b == j) for i, j in _greedy_cuts(cs, 0, m, PIECE_TOKENS) for a, b in _greedy_cuts(cs, i, j, block)]

    def gather(cut: tuple[int, int, bool]) -> tuple[np.ndarray, Segments]:
        return _block(plan, order_doc_ids, order_cluster, order_repeat, store, layout, cut[0], cut[1], m, cut[2])

    yield from _in_order(gather, cuts, GATHER_THREADS)
    extra = []
    if plan.overlap:
        if plan.index + 1 < len(plans):
            nxt = plans[plan.index + 1]
            extra.append(stream_token(store, layout, int(order_doc_ids[nxt.start]), nxt.first_offset))
    pad = plan.pad + (plan.overlap if plan.index + 1 == len(plans) else 0)  # < one unit (plan_shards checks it)
    if extra or pad:
        filler = np.concatenate([np.asarray(extra, dtype=store.dtype), np.full(pad, layout.pad_id, dtype=store.dtype)])
        yield filler, Segments.filler(len(filler))


def _in_order(fn, items: list, threads: int) -> Iterator:
    """``fn(item)`` for each item, in order; with ``threads`` > 0 computed that many items ahead in
    threads (numpy's gather releases the GIL), at most ``2 * threads`` results waiting."""
    if threads <= 0 or len(items) < 2:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="gather")
    try:
        ahead: deque = deque()
        for item in items:
            ahead.append(pool.submit(fn, item))
            if len(ahead) > 2 * threads:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _greedy_cuts(cs: np.ndarray, i: int, j: int, limit: int) -> Iterator[tuple[int, int]]:
    """``[a, b)`` ranges covering samples ``i:j`` (``cs``: their cumulative sizes), each the most whole
    samples whose tokens stay within ``limit``, at least one."""
    while i < j:
        base = int(cs[i - 1]) if i else 0
        b = min(j, max(i + 1, int(np.searchsorted(cs, base + limit, side="right"))))
        yield i, b
        i = b


def _block(plan: ShardPlan, order_doc_ids, order_cluster, order_repeat, store, layout: StreamLayout,
           a: int, b: int, m: int, piece_end: bool) -> tuple[np.ndarray, Segments]:
    """Samples ``a:b`` of shard ``plan`` (of ``m``), gathered, the shard's head and tail cut off."""
    s, e = plan.start + a, plan.start + b
    docs = np.asarray(order_doc_ids[s:e], dtype=np.int64)
    tokens, piece_sizes = store.gather(docs, layout.eos_id, bos_id=layout.bos_id)
    begins: np.ndarray = np.ones(len(docs), dtype=bool)
    if a == 0 and plan.first_offset:
        tokens = tokens[plan.first_offset:]
        piece_sizes[0] -= plan.first_offset
        begins[0] = False
    if b == m and plan.tail:
        tokens = tokens[: len(tokens) - plan.tail]
        piece_sizes[-1] -= plan.tail
    segs = Segments(piece_sizes, np.arange(s, e, dtype=np.int64), docs,
                    np.asarray(order_cluster[s:e], dtype=np.int32),
                    np.asarray(order_repeat[s:e], dtype=np.int32), begins, piece_end)
    return tokens, segs
