"""Token shards in the training order, in formats that trainers read as they are.

:func:`write_shards` streams through the order once: each sample is a document's tokens
followed by EOS, samples are grouped into shards of at most ``shard_tokens`` tokens (a
sample is never split; a sample longer than ``shard_tokens`` gets a shard of its own), and
every requested format writes the same shards (same boundaries, same first sample). Each
format lives in its own sub-directory of ``out_dir`` with file names that sort in training
order:

========== ================================================ ===========================
format     files                                            read by
========== ================================================ ===========================
bin        ``bin/train_000000.bin``...                      llm.c, modded-nanogpt
megatron   ``megatron/shard_000000.bin`` + ``.idx``...      Megatron ``IndexedDataset``
mds        ``mds/index.json`` + ``mds/shard.00000.mds``...  MosaicML ``StreamingDataset``
parquet    ``parquet/part-000000.parquet``...               pyarrow, polars, ``datasets``
========== ================================================ ===========================

Every shard file is written under a temporary name and renamed when complete, so a rerun
after an interruption (``resume=True``) keeps the finished shards and rewrites only the
rest; the output is byte-identical to an uninterrupted run. ``shards.json`` (every shard of
every format: files with size and sha256, tokens, samples, first sample position) and
``mds/index.json`` are written at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..artifacts import write_json_atomic
from ..errors import InputError
from .base import FormatWriter, ShardPlan
from .bin import BinWriter
from .mds import MDSWriter
from .megatron import MegatronWriter
from .parquet import ParquetWriter

#: format name -> writer class, in the order they are documented
FORMATS: dict[str, type[FormatWriter]] = {
    "bin": BinWriter,
    "megatron": MegatronWriter,
    "mds": MDSWriter,
    "parquet": ParquetWriter,
}
INDEX_FILE = "shards.json"
INDEX_VERSION = 1
DEFAULT_SHARD_TOKENS = 100_000_000
#: samples are handed to the writers in pieces of about this many tokens (bounds memory;
#: also the Parquet row-group size, so it must stay fixed for byte-identical reruns)
PIECE_TOKENS = 1 << 22
#: order positions read at a time while planning
PLAN_CHUNK = 1 << 20

__all__ = ["FORMATS", "INDEX_FILE", "check_formats", "write_shards", "plan_shards", "read_index", "read_sample", "ShardPlan"]


def _sample_sizes(order_doc_ids: np.ndarray, lengths: np.ndarray, start: int, stop: int) -> np.ndarray:
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
    return lens + 1


def plan_shards(order_doc_ids: np.ndarray, lengths: np.ndarray, shard_tokens: int) -> list[ShardPlan]:
    """Greedy split of the order into shards of at most ``shard_tokens`` tokens (EOS included).

    A shard closes before the sample that would push it past ``shard_tokens``; a sample
    longer than that fills a shard alone. Vectorised: one ``searchsorted`` per shard.
    """
    if shard_tokens < 1:
        raise InputError(f"--shard-tokens {shard_tokens}: must be at least 1")
    plans: list[ShardPlan] = []
    n = len(order_doc_ids)
    cur_start, cur_tokens = 0, 0
    for chunk_start in range(0, n, PLAN_CHUNK):
        sizes = _sample_sizes(order_doc_ids, lengths, chunk_start, min(n, chunk_start + PLAN_CHUNK))
        cs = np.cumsum(sizes)
        i, m = 0, len(sizes)
        while i < m:
            base = int(cs[i - 1]) if i else 0
            j = int(np.searchsorted(cs, base + (shard_tokens - cur_tokens), side="right"))
            if j == i:  # the next sample does not fit
                if cur_tokens == 0:
                    j = i + 1  # oversized sample: a shard of its own
                else:
                    plans.append(ShardPlan(len(plans), cur_start, chunk_start + i, cur_tokens))
                    cur_start, cur_tokens = chunk_start + i, 0
                    continue
            cur_tokens += int(cs[j - 1]) - base
            i = j
            if i < m or cur_tokens >= shard_tokens:
                plans.append(ShardPlan(len(plans), cur_start, chunk_start + i, cur_tokens))
                cur_start, cur_tokens = chunk_start + i, 0
    if cur_tokens:
        plans.append(ShardPlan(len(plans), cur_start, n, cur_tokens))
    return plans


def _pieces(sizes: np.ndarray, piece_tokens: int) -> Iterable[tuple[int, int]]:
    cs = np.cumsum(sizes)
    i, m = 0, len(sizes)
    while i < m:
        base = int(cs[i - 1]) if i else 0
        j = max(i + 1, int(np.searchsorted(cs, base + piece_tokens, side="right")))
        yield i, j
        i = j


def _clean_stale(writer: FormatWriter, plans: list[ShardPlan]) -> None:
    """Drop leftovers of interrupted writes and shard files that are not part of this plan."""
    if not writer.dir.is_dir():
        return
    keep = {f for p in plans for f in writer.files(p.index)} | set(writer.final_files())
    for f in writer.dir.glob(".*.tmp"):
        f.unlink(missing_ok=True)
    for f in writer.dir.glob(writer.pattern):
        if f not in keep:
            f.unlink(missing_ok=True)


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """``formats`` without duplicates, in the order given; a one-line error for an unknown or empty list."""
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"--format {','.join(formats)}: unknown {', '.join(unknown) or 'empty'}; "
                         f"choose from {','.join(FORMATS)}")
    return formats


def write_shards(
    order_doc_ids: np.ndarray,
    order_cluster: np.ndarray,
    order_repeat: np.ndarray,
    token_store,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = ("bin",),
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    eos_id: int,
    vocab_size: int,
    progress: bool = True,
    resume: bool = True,
) -> dict:
    """Write the samples of the order (document tokens + EOS) as shards in each of ``formats``.

    ``order_*`` are aligned arrays, one entry per position of ``order.parquet``;
    ``token_store`` is a :class:`clusterclip.token_store.TokenStore` holding every document
    of the order. With ``resume`` the shards already complete in ``out_dir`` are kept (their
    sha256 is recomputed), the others are (re)written. Returns the ``shards.json`` index.
    """
    out = Path(out_dir)
    formats = check_formats(formats)
    n = len(order_doc_ids)
    if len(order_cluster) != n or len(order_repeat) != n:
        raise ValueError("order_doc_ids, order_cluster and order_repeat must have the same length")
    if not 0 <= eos_id < vocab_size:
        raise InputError(f"EOS id {eos_id} is outside the vocabulary (0..{vocab_size - 1}); check --eos-token")
    if vocab_size > 2**31:
        raise InputError(f"vocabulary of {vocab_size} ids: token ids must fit int32")

    lengths = token_store.lengths
    plans = plan_shards(order_doc_ids, lengths, int(shard_tokens))
    total_tokens = sum(p.tokens for p in plans)
    writers = [FORMATS[f](out, vocab_size=vocab_size, eos_id=eos_id) for f in formats]
    for w in writers:
        w.dir.mkdir(parents=True, exist_ok=True)
        _clean_stale(w, plans)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_tokens, unit="tok", unit_scale=True, desc=f"shards ({','.join(formats)})",
                   dynamic_ncols=True, leave=False)
    records: dict[str, list[dict]] = {f: [] for f in formats}
    try:
        for plan in plans:
            sizes = _sample_sizes(order_doc_ids, lengths, plan.start, plan.stop)
            todo = []
            for w in writers:
                if resume and w.is_done(plan, sizes):
                    records[w.name].append(_record(plan, w.existing_records(plan)))
                else:
                    todo.append(w)
            if todo:
                _write_one(plan, sizes, todo, records, order_doc_ids, order_cluster, order_repeat, token_store,
                           eos_id, vocab_size, bar)
            elif bar is not None:
                bar.update(plan.tokens)
        extra = {}
        for w in writers:
            files = w.finish(records[w.name])
            if files:
                extra[w.name] = files
    finally:
        if bar is not None:
            bar.close()

    index = {
        "version": INDEX_VERSION,
        "formats": list(formats),
        "n_samples": int(n),
        "n_tokens": int(total_tokens),
        "n_shards": len(plans),
        "shard_tokens": int(shard_tokens),
        "eos_id": int(eos_id),
        "vocab_size": int(vocab_size),
        "token_dtype": token_store.dtype.name if hasattr(token_store, "dtype") else None,
        "shards": records,
        "dataset_files": extra,
    }
    write_json_atomic(out / INDEX_FILE, index)
    return index


def _record(plan: ShardPlan, files: list[dict]) -> dict:
    return {"index": plan.index, "first_sample": plan.start, "samples": plan.samples, "tokens": plan.tokens,
            "files": files}


def _write_one(plan, sizes, writers, records, order_doc_ids, order_cluster, order_repeat, store, eos_id,
               vocab_size, bar) -> None:
    from ..token_store import token_dtype

    gather_dtype = token_dtype(vocab_size)
    started = []
    try:
        for w in writers:
            w.begin(plan, sizes)
            started.append(w)
        for a, b in _pieces(sizes, PIECE_TOKENS):
            s, e = plan.start + a, plan.start + b
            docs = np.asarray(order_doc_ids[s:e], dtype=np.int64)
            tokens, piece_sizes = store.gather(docs, eos_id, out_dtype=gather_dtype)
            clusters = np.asarray(order_cluster[s:e])
            repeats = np.asarray(order_repeat[s:e])
            for w in writers:
                w.write(tokens, piece_sizes, docs, clusters, repeats)
            if bar is not None:
                bar.update(int(piece_sizes.sum()))
        for w in writers:
            records[w.name].append(_record(plan, w.commit()))
        from ..faults import checkpoint

        checkpoint("schedule.shard")
    except ValueError as e:
        for w in started:
            w.abort()
        raise InputError(f"shard {plan.index}: {e}; lower --shard-tokens") from None
    except BaseException:
        for w in started:
            w.abort()
        raise


# --------------------------------------------------------------------------- reading back
def read_index(out_dir: str | os.PathLike) -> dict:
    """The ``shards.json`` of a schedule directory."""
    p = Path(out_dir) / INDEX_FILE
    if not p.is_file():
        raise InputError(f"{p}: missing; this schedule wrote no shards (run `clusterclip schedule` without --dry-run)")
    return json.loads(p.read_text("utf-8"))


def find_shard(index: dict, fmt: str, position: int) -> dict:
    shards = index["shards"].get(fmt)
    if shards is None:
        raise InputError(f"--format {fmt}: not written here; this directory has {', '.join(index['shards'])}")
    firsts = [s["first_sample"] for s in shards]
    k = int(np.searchsorted(firsts, position, side="right")) - 1
    if k < 0 or position >= shards[k]["first_sample"] + shards[k]["samples"]:
        raise InputError(f"--sample {position}: out of range (0..{index['n_samples'] - 1})")
    return shards[k]


def read_sample(out_dir: str | os.PathLike, fmt: str, position: int, index: dict | None = None) -> np.ndarray:
    """Tokens of the sample at ``position``, read back from ``fmt``'s files through its own layout."""
    from . import bin as bin_fmt, mds, megatron, parquet

    index = index or read_index(out_dir)
    rec = find_shard(index, fmt, position)
    reader = {"bin": bin_fmt.read_sample, "megatron": megatron.read_sample, "mds": mds.read_sample,
              "parquet": parquet.read_sample}[fmt]
    return np.asarray(reader(Path(out_dir), rec, position - rec["first_sample"], index["eos_id"]), dtype=np.int64)


def verify_shards(out_dir: str | os.PathLike) -> list[str]:
    """One line per problem with the shards listed in ``shards.json`` (missing, size, sha256)."""
    from ..artifacts.files import sha256_file

    out = Path(out_dir)
    problems = []
    index = read_index(out)
    records = [f for shards in index["shards"].values() for s in shards for f in s["files"]]
    records += [f for files in (index.get("dataset_files") or {}).values() for f in files]
    for rec in records:
        p = out / rec["path"]
        if not p.is_file():
            problems.append(f"{p}: missing (listed in {out / INDEX_FILE})")
        elif p.stat().st_size != rec["bytes"]:
            problems.append(f"{p}: {p.stat().st_size} bytes, but {rec['bytes']} were recorded")
        elif sha256_file(p) != rec["sha256"]:
            problems.append(f"{p}: its sha256 differs from the one recorded in {out / INDEX_FILE}")
    return problems
