"""Writing the shards as engine tasks: every pending shard is one task (:func:`write_shard_task`).

Every cut is known from the lengths before any shard is written (:func:`~clusterclip.shards.plan_shards`),
so each shard is independent: a task gets its plan, the next shard's plan (for the look-ahead
token), the order positions of its samples and the token store's path, writes its files in every
format (:func:`~clusterclip.shards.write.write_shard`) and returns their sizes and digests.
:func:`engine_runner` turns an engine into the ``run_shards`` of
:func:`~clusterclip.shards.write_shards`, which journals each result as it arrives, in the driver,
whatever engine wrote it. The shards are the bytes :func:`~clusterclip.shards.write.write_here`
writes: the same cuts, the same tokens, the same writers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def engine_runner(engine, settings):
    """``run_shards`` for :func:`clusterclip.shards.write_shards`: every pending shard a task of ``engine``."""

    def run_shards(job, pending, writers, bar):
        store_path = str(job.store.path)
        n_plans = len(job.plans)

        def args():
            for plan, todo in pending:
                nxt = job.plans[plan.index + 1] if plan.index + 1 < n_plans else None
                s, e = plan.start, plan.stop
                yield (str(job.out), job.layout, [fmt for fmt, _ in todo], plan, nxt, n_plans,
                       np.asarray(job.order_doc_ids[s:e]), np.asarray(job.order_cluster[s:e]),
                       np.asarray(job.order_repeat[s:e]), int(job.order_doc_ids[nxt.start]) if nxt else None,
                       store_path)

        sizes = [plan.tokens for plan, _ in pending]
        _STORES.clear()
        _STORES[_store_key(store_path)] = job.store  # a task in this process reads the store already open
        try:
            for i, results in engine.map(settings, write_shard_task, args(), sizes=sizes, bar=bar):
                plan, todo = pending[i]
                for (fmt, _), got in zip(todo, results):
                    yield plan, fmt, got
        finally:
            _STORES.clear()

    return run_shards


def write_shard_task(out: str, layout, formats: list[str], plan, nxt, n_plans: int, doc_ids, cluster, repeat,
                     next_doc, store_path: str, *, progress) -> list[dict]:
    """An engine task: shard ``plan`` written in each of ``formats``; the results of :func:`write_shard`."""
    from . import FORMATS
    from .write import ShardJob, write_shard

    base = plan.start
    job = ShardJob(Path(out), layout, _Plans(plan, nxt, n_plans),
                   _Window(base, doc_ids, {nxt.start: next_doc} if nxt is not None else None),
                   _Window(base, cluster), _Window(base, repeat), _open_store(store_path))
    writers = [FORMATS[f](Path(out), layout) for f in formats]
    return list(write_shard(writers, plan, job, _Advance(progress) if progress is not None else None))


class _Advance:
    """``write_shard``'s bar, as the task's ``progress`` callable."""

    def __init__(self, progress):
        self.update = progress


class _Window:
    """Order positions ``[base, base + len(values))`` of one array (plus single positions in ``extra``)."""

    def __init__(self, base: int, values: np.ndarray, extra: dict | None = None):
        self.base, self.values, self.extra = base, values, extra or {}

    def __getitem__(self, key):
        if isinstance(key, slice):
            a, b = key.start - self.base, key.stop - self.base
            if a < 0 or b > len(self.values) or key.step not in (None, 1):
                raise IndexError(f"order positions {key.start}..{key.stop} are not in this shard's window")
            return self.values[a:b]
        key = int(key)
        if key in self.extra:
            return self.extra[key]
        if not 0 <= key - self.base < len(self.values):
            raise IndexError(f"order position {key} is not in this shard's window")
        return self.values[key - self.base]


class _Plans:
    """The plans a shard's writer looks at: its own and the next one (for the look-ahead token)."""

    def __init__(self, plan, nxt, n: int):
        self.plan, self.nxt, self.n = plan, nxt, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i == self.plan.index:
            return self.plan
        if self.nxt is not None and i == self.nxt.index:
            return self.nxt
        raise IndexError(f"shard {i} is not known to the task of shard {self.plan.index}")


_STORES: dict = {}


def _open_store(path: str):
    """The token store, opened once per process (memory-mapped) while its ``meta.json`` is unchanged."""
    from ..tokens.store import TokenStore

    key = _store_key(path)
    if key not in _STORES:
        _STORES.clear()
        _STORES[key] = TokenStore.open(path)
    return _STORES[key]


def _store_key(path: str) -> tuple[str, int]:
    from ..tokens.store import META

    return path, os.stat(Path(path) / META).st_mtime_ns
