"""``schedule`` on Ray: tokenize the used documents in tasks, then write every shard in its own task.

Planning the order stays one vectorised call in the driver. Then:

1. **Tokenize** (:func:`tokenize_on_ray`). The driver checks the corpus against the digests
   ``embed`` recorded, reads ``docs.parquet`` (its digest checked) for the used documents'
   file and row, and cuts them into *ranges* of about equal text: consecutive doc_ids of one
   corpus file (:func:`doc_ranges`). Each task builds a token store of its range with
   :func:`clusterclip.tokens.build.build_token_store` (journaled, resumable) under
   ``tokens.parts/``; the driver then merges them, in doc_id order, into the one store the
   shard writers read: ``tokens.bin`` is assembled by tasks copying each range to its offset,
   ``lengths.npy`` / ``offsets.npy`` / ``meta.json`` are written by the driver, ``meta.json``
   last. The merged store holds exactly the bytes the local engine's store holds.
2. **Write the shards** (:func:`shard_runner`). Every cut is known from the lengths before
   any shard is written (:func:`clusterclip.shards.plan_shards`), so each missing shard is one
   task that writes its files in every format (:func:`clusterclip.shards.write_shard`) and
   returns their sizes and digests. The driver journals each result as it arrives (the same
   journal as the local engine: a resumed run keeps what re-hashes to it), then writes
   ``shards.json``, the formats' index files and the manifest.

Every shard is byte-identical to the local engine's: the same cuts, the same tokens, the same
writers. Workers read the corpus, the token store and the output by path: on a multi-node
cluster ``--out`` and the corpus must be on a shared file system, and ``--tokenizer`` a file
every node can read (each task loads it and checks that its digest is the driver's).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MismatchError
from ..faults import checkpoint
from ..progress import bar as progress_bar
from ..readers import reader_for
from .ray_session import cluster_cpus, connect, run_tasks, task_environment

PARTS_DIR = "tokens.parts"
#: ranges per CPU of the cluster (for balance), and the fewest characters in a range
TASKS_PER_CPU = 4
MIN_RANGE_CHARS = 1 << 20
#: ranges cut from one JSON lines file at most (each task reads the file from its start)
MAX_JSONL_RANGES = 64
MAX_COMPRESSED_RANGES = 8


# --------------------------------------------------------------------------- tokenizing
@dataclass
class DocRange:
    """Used documents ``ids`` (ascending, within ``[start, stop)``) of one corpus file, at ``rows``."""

    start: int
    stop: int
    source: str
    ids: np.ndarray
    rows: np.ndarray
    chars: int = 0

    def name(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.ids, dtype="<i8").tobytes()).hexdigest()[:12]
        return f"{self.start:012d}-{self.stop:012d}-{digest}"


def tokenize_on_ray(emb, doc_ids, n_docs: int, tok, path, settings, *, progress: bool):
    """A token store at ``path`` of ``doc_ids`` (ascending), tokenized in Ray tasks; as ``build_token_store``."""
    from ..tokens.build import build_token_store
    from ..tokens.store import META, TokenStore

    path = Path(path)
    if (path / META).is_file():  # merged by an interrupted run of the same job: reused (or refused) as it is
        return build_token_store(iter(()), n_docs, tok, path, progress=False)
    ray = connect(settings.ray_address)
    emb.check_corpus(rehash=settings.rehash_inputs, progress=progress)
    ranges = doc_ranges(emb, np.asarray(doc_ids, dtype=np.int64), cluster_cpus())
    if not ranges:
        return build_token_store(iter(()), n_docs, tok, path, progress=False)
    parts = path.parent / PARTS_DIR
    parts.mkdir(parents=True, exist_ok=True)
    expected = _tokenizer_identity(tok)
    task_settings = settings.replace(tokenizer=_portable_spec(settings.tokenizer))
    remote = ray.remote(_tokenize_range)
    largest_first = sorted(range(len(ranges)), key=lambda i: -ranges[i].chars)  # a shorter tail
    args = ((task_settings, expected, emb.text_column, r.source, r.rows, r.ids - r.start, r.stop - r.start,
             str(parts / r.name())) for r in (ranges[i] for i in largest_first))
    n_tokens = [0] * len(ranges)
    with progress_bar(int(sum(len(r.ids) for r in ranges)), desc="tokenize (ray)", unit="doc", unit_scale=True,
                      enabled=progress) as bar:
        for j, got in run_tasks(remote, args, resources={"num_cpus": 1}):
            i = largest_first[j]
            n_tokens[i] = got
            bar.update(len(ranges[i].ids))
            checkpoint("schedule.tokens")  # a range is durable (a rerun reuses its finished store)
    _merge(ranges, [parts / r.name() for r in ranges], n_tokens, n_docs, tok, path)
    store = TokenStore.open(path)
    import shutil

    shutil.rmtree(parts, ignore_errors=True)
    return store


def doc_ranges(emb, ids: np.ndarray, cpus: int) -> list[DocRange]:
    """The used documents cut into ranges of one corpus file each, of about equal text (see the module docstring).

    A range holds about ``1 / (TASKS_PER_CPU * cpus)`` of the characters to tokenize (``n_chars``
    of ``docs.parquet``), at least MIN_RANGE_CHARS. A task reads its file from the start up to
    its rows (a JSON lines file has no index), so a JSON lines file is cut into at most
    MAX_JSONL_RANGES ranges (MAX_COMPRESSED_RANGES when compressed: decompressing the skipped
    part costs more).
    """
    groups: list[list] = []  # [source, [ids...], [rows...], [chars...]]
    base = 0
    for batch in emb.iter_docs(["source", "row", "n_chars"]):
        stop = base + batch.num_rows
        lo, hi = np.searchsorted(ids, [base, stop], side="left")
        if hi > lo:
            sel = ids[lo:hi] - base
            enc = batch.column(0).take(sel).dictionary_encode()
            codes = enc.indices.to_numpy(zero_copy_only=False)
            names = enc.dictionary.to_pylist()
            rows, chars = batch.column(1).to_numpy()[sel], batch.column(2).to_numpy()[sel]
            cuts = np.flatnonzero(np.diff(codes)) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(sel)]):
                source = names[codes[a]]
                if not groups or groups[-1][0] != source:
                    groups.append([source, [], [], []])
                groups[-1][1].append(ids[lo + a: lo + b])
                groups[-1][2].append(rows[a:b])
                groups[-1][3].append(chars[a:b])
        base = stop
    total = int(sum(int(c.sum()) for g in groups for c in g[3]))
    target = max(MIN_RANGE_CHARS, -(-total // max(1, TASKS_PER_CPU * cpus)))
    out = []
    for source, id_chunks, row_chunks, char_chunks in groups:
        gids, grows, gchars = np.concatenate(id_chunks), np.concatenate(row_chunks), np.concatenate(char_chunks)
        reader = reader_for(source)
        cap = None if reader.format == "parquet" else (MAX_COMPRESSED_RANGES if reader.compression else MAX_JSONL_RANGES)
        size = max(target, -(-int(gchars.sum()) // cap)) if cap else target
        cum = np.cumsum(gchars)
        # cut after the document where each multiple of `size` characters is reached
        ends = np.unique(np.minimum(np.searchsorted(cum, np.arange(size, int(cum[-1]) + size, size)) + 1, len(gids)))
        a = 0
        for b in ends:
            if b > a:
                out.append(DocRange(int(gids[a]), int(gids[b - 1]) + 1, source, gids[a:b], grows[a:b],
                                    int(gchars[a:b].sum())))
                a = int(b)
    return out


def _portable_spec(spec: str) -> str:
    """``--tokenizer`` as workers should load it: a local path made absolute (their directory may differ)."""
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def _tokenizer_identity(tok) -> dict:
    d = tok.describe()
    return {k: d.get(k) for k in ("sha256", "vocab_size", "eos_id", "bos_id")}


def _tokenize_range(settings, expected: dict, text_column: str, source: str, rows, local_ids, n_local: int,
                    part: str) -> int:
    import socket

    from ..tokens.build import build_token_store
    from ..tokens.tokenizer import load_with_delimiters

    task_environment()
    tok = load_with_delimiters(settings)
    if _tokenizer_identity(tok) != expected:
        raise MismatchError(f"--tokenizer {settings.tokenizer}: on {socket.gethostname()} it is not the tokenizer the "
                            f"driver loaded (sha256 {expected['sha256'][:12]}...); give every node the same file")
    texts = ((int(i), text) for i, (_, text) in zip(local_ids, reader_for(source).texts(rows, text_column)))
    return build_token_store(texts, n_local, tok, part, progress=False, workers=1).n_tokens  # Ray spreads


def _merge(ranges: list[DocRange], parts: list[Path], n_tokens: list[int], n_docs: int, tok, path: Path) -> None:
    """The range stores -> one store at ``path`` in doc_id order, by the store's owner; the copies run in tasks."""
    import ray

    from ..tokens.store import merge_token_stores

    def copy_all(jobs: list[tuple[str, str, int]]) -> None:
        for _ in run_tasks(ray.remote(_copy_into), jobs, resources={"num_cpus": 1}):
            pass

    store = merge_token_stores([(p, r.start, r.stop) for r, p in zip(ranges, parts)], n_docs, tok, path,
                               copy_all=copy_all)
    if store.n_tokens != sum(n_tokens):
        raise RuntimeError("internal error: a token range changed while it was merged")


def _copy_into(src: str, dst: str, offset: int) -> int:
    from ..tokens.store import copy_into

    task_environment()
    return copy_into(src, dst, offset)


# --------------------------------------------------------------------------- writing the shards
def shard_runner(settings):
    """``run_shards`` for :func:`clusterclip.shards.write_shards`: every pending shard in a Ray task."""

    def run_shards(job, pending, writers, bar):
        ray = connect(settings.ray_address)
        remote = ray.remote(_write_shard_task)
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

        for i, results in run_tasks(remote, args(), resources={"num_cpus": 1}):
            plan, todo = pending[i]
            if bar is not None:
                bar.update(plan.tokens)
            for (fmt, _), got in zip(todo, results):
                yield plan, fmt, got

    return run_shards


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
    """The merged token store, opened once per worker process (memory-mapped)."""
    from ..tokens.store import META, TokenStore

    key = (path, os.stat(Path(path) / META).st_mtime_ns)
    if key not in _STORES:
        _STORES.clear()
        _STORES[key] = TokenStore.open(path)
    return _STORES[key]


def _write_shard_task(out: str, layout, formats: list[str], plan, nxt, n_plans: int, doc_ids, cluster, repeat,
                      next_doc, store_path: str) -> list[dict]:
    from ..shards import FORMATS, ShardJob, write_shard

    task_environment()
    base = plan.start
    job = ShardJob(Path(out), layout, _Plans(plan, nxt, n_plans),
                   _Window(base, doc_ids, {nxt.start: next_doc} if nxt is not None else None),
                   _Window(base, cluster), _Window(base, repeat), _open_store(store_path))
    writers = [FORMATS[f](Path(out), layout) for f in formats]
    return list(write_shard(writers, plan, job))
