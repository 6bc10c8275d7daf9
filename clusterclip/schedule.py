"""The ``schedule`` step: ClusterClip order over the clusters, then token shards in that order.

It glues pure pieces together:

1. check that the ``embed`` and ``cluster`` directories belong together;
2. plan the order with :func:`clusterclip.sampling.plan_schedule` (pure, vectorised);
3. write ``order.parquet`` and the statistics of SPEC §1.3;
4. unless ``dry_run``: tokenize each used document once
   (:mod:`clusterclip.token_store`) and write the shards in the order
   (:func:`clusterclip.shards.write_shards`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .artifacts import (
    build_manifest,
    finish_output_dir,
    prepare_output_dir,
    read_manifest,
    upstream_record,
    write_parquet_atomic,
)
from .errors import InputError, MismatchError
from .sampling import SAMPLERS, BudgetError, Schedule, plan_schedule
from .schedule_stats import schedule_statistics
from .shards import check_formats, write_shards

ORDER_FILE = "order.parquet"
WORK_DIR = ".work"  # scratch space of a running schedule (token store); removed when done
DEFAULT_SHARD_TOKENS = 100_000_000


def load_cluster_labels(emb_dir: str | Path, cl_dir: str | Path) -> tuple[np.ndarray, int, dict, dict]:
    """Check that ``cl_dir`` was clustered from ``emb_dir``; return (labels, k, embed manifest, cluster manifest)."""
    emb_manifest = read_manifest(emb_dir, "embed")
    cl_manifest = read_manifest(cl_dir, "cluster")
    recorded = (cl_manifest.get("inputs") or {}).get("embed") or {}
    current = upstream_record(emb_dir, "embed")
    if recorded.get("manifest_sha256") != current["manifest_sha256"]:
        raise MismatchError(
            f"{cl_dir}: was clustered from {recorded.get('path', 'another embed run')}, not from this {emb_dir} "
            f"(manifest digest differs); rerun `clusterclip cluster {emb_dir} --out {cl_dir} --overwrite`"
        )
    path = Path(cl_dir) / "assignments.parquet"
    try:
        table = pq.read_table(path, columns=["doc_id", "cluster"])
    except (OSError, pa.ArrowInvalid, KeyError) as e:
        raise InputError(f"{path}: unreadable ({str(e).splitlines()[0]}); rerun `clusterclip cluster --overwrite`") from None
    n_docs = int(emb_manifest["statistics"]["n_docs"])
    doc_id = table.column("doc_id").to_numpy()
    if len(doc_id) != n_docs or not np.array_equal(doc_id, np.arange(n_docs)):
        raise MismatchError(
            f"{path}: has {len(doc_id)} rows but {emb_dir} holds {n_docs} documents (doc_id must be 0..N-1); "
            f"rerun `clusterclip cluster --overwrite`"
        )
    labels = table.column("cluster").to_numpy().astype(np.int64)
    k = int(cl_manifest["statistics"]["k"])
    return labels, k, emb_manifest, cl_manifest


def write_order(path: Path, schedule: Schedule) -> None:
    """``order.parquet``: one row per sample (position, doc_id, cluster, repeat), atomically."""
    table = pa.table(
        {
            "position": pa.array(np.arange(len(schedule), dtype=np.int64)),
            "doc_id": pa.array(schedule.doc_id.astype(np.int64, copy=False)),
            "cluster": pa.array(schedule.cluster.astype(np.int32, copy=False)),
            "repeat": pa.array(schedule.repeat.astype(np.int32, copy=False)),
        }
    )
    write_parquet_atomic(path, table, row_group_size=1 << 20)


def read_order(path: str | Path) -> Schedule:
    """Read an ``order.parquet`` back as a :class:`~clusterclip.sampling.Schedule`."""
    t = pq.read_table(path)
    return Schedule(
        doc_id=t.column("doc_id").to_numpy(),
        cluster=t.column("cluster").to_numpy(),
        repeat=t.column("repeat").to_numpy(),
        exhausted=False,
    )


def schedule_corpus(
    emb_dir: str | Path,
    cl_dir: str | Path,
    out_dir: str | Path,
    *,
    sampler: str = "clusterclip",
    max_repeats: int = 4,
    alpha: float = 0.0,
    epochs: float | None = None,
    samples: int | None = None,
    tokens: int | None = None,
    seed: int = 0,
    tokenizer: str | None = None,
    eos_token: str | None = None,
    bos_token: str | None = None,
    convention: str | None = None,
    allow_ordinary_delimiter: bool = False,
    align_tokens: int | None = None,
    pack: int | None = None,
    formats: tuple[str, ...] = ("bin",),
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    dry_run: bool = False,
    allow_partial: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Plan the training order of the documents in ``emb_dir`` by the clusters in ``cl_dir``.

    Writes ``order.parquet``, the shards (unless ``dry_run``) and ``manifest.json``
    into ``out_dir`` and returns the manifest. See ``clusterclip schedule --help``
    for the meaning of each setting.
    """
    if sampler not in SAMPLERS:
        raise InputError(f"--sampler {sampler!r}: unknown; choose one of {', '.join(SAMPLERS)}")
    if sum(x is not None for x in (epochs, samples, tokens)) > 1:
        raise InputError("--epochs, --samples and --tokens: give at most one budget")
    if max_repeats < 1:
        raise InputError(f"--max-repeats {max_repeats}: must be at least 1")
    if not dry_run and not tokenizer:
        raise InputError("--tokenizer: required to write shards (a tokenizer.json, a HF tokenizer dir or a hub name); "
                         "or pass --dry-run to write only the order")
    if tokens is not None and not tokenizer:
        raise InputError("--tokens: a token budget needs --tokenizer to count tokens, even with --dry-run")
    formats = check_formats(formats, align_tokens=align_tokens, pack=pack)

    labels, k, _, _ = load_cluster_labels(emb_dir, cl_dir)
    n_docs = len(labels)

    tok = None
    if tokenizer:
        from .tokenization import load_tokenizer

        tok = load_tokenizer(tokenizer, require_eos=False)
        tok.set_delimiters(eos_token=eos_token, bos_token=bos_token, convention=convention,
                           allow_ordinary_delimiter=allow_ordinary_delimiter)
    delimiters = (tok.bos_id is not None) + (tok.eos_id is not None) if tok else 0

    settings = {
        "sampler": sampler,
        "max_repeats": max_repeats if sampler == "clusterclip" else None,
        "alpha": alpha if sampler != "random" else None,
        "budget": _budget_record(epochs, samples, tokens, n_docs),
        "seed": seed,
        "tokenizer": tokenizer,
        "tokenizer_digest": tok.describe() if tok else None,
        "eos_id": tok.eos_id if tok else None,
        "bos_id": tok.bos_id if tok else None,
        "eos_token": eos_token,
        "bos_token": bos_token,
        "convention": convention,
        "allow_ordinary_delimiter": allow_ordinary_delimiter,
        "align_tokens": None if dry_run else align_tokens,
        "pack": None if dry_run else pack,
        "formats": None if dry_run else list(formats),
        "shard_tokens": None if dry_run else shard_tokens,
        "dry_run": dry_run,
        "allow_partial": allow_partial,
    }
    inputs = {"embed": upstream_record(emb_dir, "embed"), "cluster": upstream_record(cl_dir, "cluster")}
    job = {"step": "schedule", "settings": settings, "inputs": inputs}
    out = Path(out_dir)
    state = prepare_output_dir(out, job, overwrite=overwrite)
    if state == "done":
        return read_manifest(out, "schedule") | {"already_done": True}

    work = out / WORK_DIR
    work.mkdir(exist_ok=True)
    lengths = None
    store = None
    if tokens is not None:
        # A token budget needs every document's length before planning.
        store = _tokenize(emb_dir, np.arange(n_docs), n_docs, tok, work, progress)
        lengths = _sample_lengths(store, delimiters)

    try:
        schedule = plan_schedule(
            labels, sampler=sampler, max_repeats=max_repeats, alpha=alpha, samples=samples,
            tokens=tokens, epochs=epochs, lengths=lengths, seed=seed, allow_partial=allow_partial,
        )
    except BudgetError as e:
        raise InputError(f"{e}; or pass --allow-partial to write what is possible") from None
    write_order(out / ORDER_FILE, schedule)

    outputs = [ORDER_FILE]
    shards_index = None
    if not dry_run:
        used = np.unique(schedule.doc_id)
        if store is None:
            store = _tokenize(emb_dir, used, n_docs, tok, work, progress)
        lengths = _sample_lengths(store, delimiters)
        shards_index = write_shards(
            schedule.doc_id, schedule.cluster, schedule.repeat, store, out,
            formats=formats, shard_tokens=shard_tokens, eos_id=tok.eos_id, vocab_size=tok.vocab_size,
            bos_id=tok.bos_id, align_tokens=align_tokens, pack=pack,
            progress=progress, resume=(state == "resume"),
        )
        outputs.append("shards.json")
    stats = schedule_statistics(
        schedule, n_docs=n_docs, n_clusters=k, lengths=lengths,
        labels=labels, max_repeats=max_repeats if sampler == "clusterclip" else None,
    )
    if shards_index is not None:
        stats["shards"] = {fmt: len(v) for fmt, v in shards_index["shards"].items()}
    shutil.rmtree(work, ignore_errors=True)
    manifest = build_manifest("schedule", settings, inputs, [{"path": p} for p in outputs], stats)
    finish_output_dir(out, manifest)
    return manifest


def _sample_lengths(store, delimiters: int) -> np.ndarray:
    """Tokens of each document's sample (document + delimiters); 0 for documents not tokenized."""
    lengths = store.lengths.astype(np.int64)
    return np.where(lengths >= 0, lengths + delimiters, 0)


def _budget_record(epochs, samples, tokens, n_docs) -> dict:
    if samples is not None:
        return {"samples": int(samples)}
    if tokens is not None:
        return {"tokens": int(tokens)}
    return {"epochs": float(epochs if epochs is not None else 1.0), "n_docs": n_docs}


def _tokenize(emb_dir, doc_ids, n_docs, tok, work: Path, progress: bool):
    from .readers import read_texts
    from .token_store import build_token_store

    return build_token_store(read_texts(emb_dir, doc_ids), n_docs, tok, work / "tokens", progress=progress)
