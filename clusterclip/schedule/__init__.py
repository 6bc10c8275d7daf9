"""The ``schedule`` step: the ClusterClip order over the clusters, then token shards in that order.

1. check that the ``embed`` and ``cluster`` directories belong together (:class:`ClusterDir`);
2. plan the order with :func:`.sampling.plan_schedule` (pure, vectorised), before ``--out`` is touched
   (a token budget first needs every document's length, so it is planned after tokenizing);
3. write ``order.parquet`` and the statistics of SPEC §1.3 (:mod:`.stats`);
4. unless a dry run: tokenize each used document once (:mod:`clusterclip.token_store`) from the
   corpus (its content checked against what ``embed`` read) and write the shards in the order
   (:func:`clusterclip.shards.write_shards`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts import Job, OutputDir, StepResult, build_manifest, file_record
from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..engines import engine
from ..errors import InputError
from ..faults import checkpoint
from .directory import INDEX_FILE, ORDER_FILE, WORK_DIR, ScheduleDir, write_order
from .sampling import SAMPLERS, BudgetError, Schedule, epochs_to_samples, plan_schedule
from .settings import DEFAULT_SHARD_TOKENS, ScheduleSettings
from .stats import format_statistics, schedule_statistics

__all__ = ["DEFAULT_SHARD_TOKENS", "SAMPLERS", "ScheduleDir", "ScheduleSettings", "Schedule", "format_statistics",
           "plan_schedule", "schedule_corpus", "schedule_statistics"]

#: bytes of memory per planned sample (doc_id int64, cluster int32, repeat int32, plus working copies)
_BYTES_PER_SAMPLE = 40


def schedule_corpus(emb_dir, cl_dir, out_dir, settings: ScheduleSettings | None = None, *, overwrite: bool = False,
                    progress: bool = True, log: Callable[[str], None] | None = None, **kwargs) -> StepResult:
    """Plan the training order of the documents of ``emb_dir`` by the clusters of ``cl_dir``; write it,
    the shards (unless a dry run) and ``manifest.json`` into ``out_dir``.

    Settings come as a :class:`ScheduleSettings` or as its fields in keyword arguments.
    """
    from ..embed import settings_from

    t0 = time.perf_counter()
    s = settings_from(settings, kwargs, ScheduleSettings)
    say = log or (lambda message: None)
    emb = EmbedDir(emb_dir)
    cl = ClusterDir(cl_dir)
    cl.check_belongs_to(emb)
    labels = cl.labels()
    n_docs = len(labels)
    _check_budget_size(s, n_docs)

    tok = None
    if s.tokenizer:
        from ..tokens.tokenizer import load_with_delimiters

        tok = load_with_delimiters(s)
    delimiters = ((tok.bos_id is not None) + (tok.eos_id is not None)) if tok else 0
    # the tokenizer's identity, not which backend runs it (a fallback to tokenizers changes no token)
    record = {**s.record(), "tokenizer_digest": tok.describe(with_backend=False) if tok else None,
              "eos_id": tok.eos_id if tok else None, "bos_id": tok.bos_id if tok else None}
    mix = _mix_inputs(s, emb, cl, labels, say)
    record.update(mix.record)
    # a token budget, token balance or per-cluster token budgets need every document's length before planning
    needs_lengths = s.tokens is not None or s.balance == "tokens" or s.budget_tokens is not None
    schedule = None
    if not needs_lengths:  # plan before anything in --out is touched: a budget error changes nothing
        schedule = _plan(labels, s, None, mix)
    job = Job("schedule", record, {"embed": emb.record(), "cluster": cl.record()})
    runner = engine(s.engine)
    if not s.dry_run:  # e.g. Ray is there and --ray-address answers, before --out is touched
        runner.preflight(s)
    with OutputDir(out_dir, job, overwrite=overwrite, inputs=(emb.path, cl.path), log=say) as run:
        if run.state == "done":
            return StepResult(run.manifest, Path(out_dir), "done", time.perf_counter() - t0)
        build = run.build
        work = build / WORK_DIR
        work.mkdir(exist_ok=True)
        store = None
        lengths = None
        if needs_lengths:  # tokenize everything first (the token store), then sample by lengths
            store = runner.build_token_store(emb, np.arange(n_docs), n_docs, tok, work / "tokens", s, progress=progress)
            lengths = sample_lengths(store, delimiters)
            schedule = _plan(labels, s, lengths, mix)
        write_order(build / ORDER_FILE, schedule)
        checkpoint("schedule.order")
        names = [ORDER_FILE]
        shard_records: list[dict] = []
        index = None
        if not s.dry_run:
            from ..shards import CONVENTION_MIN_SHARDS, write_shards

            if store is None:
                store = runner.build_token_store(emb, np.unique(schedule.doc_id), n_docs, tok, work / "tokens", s,
                                                progress=progress)
            lengths = sample_lengths(store, delimiters)
            index = write_shards(schedule.doc_id, schedule.cluster, schedule.repeat, store, build,
                                 formats=s.formats, shard_tokens=s.shard_tokens, eos_id=tok.eos_id,
                                 bos_id=tok.bos_id, vocab_size=tok.vocab_size, align_tokens=s.align_tokens,
                                 pack=s.pack, journal_path=work / "shards-journal.jsonl", progress=progress,
                                 resume=(run.state == "resume"), run_shards=runner.shard_runner(s),
                                 min_shards=CONVENTION_MIN_SHARDS.get(s.convention, 1))
            names.append(INDEX_FILE)
            for fmt_shards in index["shards"].values():
                for shard in fmt_shards:
                    shard_records.extend(shard["files"])
            for files in (index.get("dataset_files") or {}).values():
                shard_records.extend(files)
        stats = schedule_statistics(schedule, n_docs=n_docs, n_clusters=cl.k, lengths=lengths, labels=labels,
                                    max_repeats=mix.max_repeats(s) if s.sampler == "clusterclip" else None,
                                    lengths_known=store.lengths >= 0 if store is not None else None,
                                    keep=mix.keep)
        if index is not None:
            stats["shards"] = {fmt: len(v) for fmt, v in index["shards"].items()}
        if store is not None:
            stats["tokenizer_backend"] = store.meta.get("backend")
        shutil.rmtree(work, ignore_errors=True)
        outputs = [file_record(build, n) for n in names] + _shard_file_records(shard_records)
        accounting = {"samples": len(schedule), "order_rows": len(schedule),
                      "shard_samples": {f: sum(x["samples"] for x in v) for f, v in index["shards"].items()}
                      if index else None}  # write_shards checked that every format holds exactly the order
        manifest = build_manifest("schedule", record, job.inputs, outputs, stats, accounting=accounting)
        run.commit(manifest)
    return StepResult(manifest, Path(out_dir), run.state, time.perf_counter() - t0, len(schedule))


def sample_lengths(store, delimiters: int) -> np.ndarray:
    """Tokens of each document's sample (document + delimiters); 0 for documents not tokenized."""
    lengths = store.lengths.astype(np.int64)
    return np.where(lengths >= 0, lengths + delimiters, 0)


def _shard_file_records(records: list[dict]) -> list[dict]:
    return [{"path": r["path"], "bytes": r["bytes"], "sha256": r["sha256"]} for r in records]


def _check_budget_size(s: ScheduleSettings, n_docs: int) -> None:
    """Refuse a budget that plans no sample, or more samples than this machine can hold, in one line."""
    if s.samples is not None:
        n, flag = s.samples, f"--samples {s.samples}"
    elif s.epochs is not None or (s.tokens is None and s.budget_tokens is None):
        epochs = 1.0 if s.epochs is None else s.epochs
        n, flag = epochs_to_samples(epochs, n_docs), f"--epochs {epochs:g}"
        if n == 0:
            raise InputError(f"{flag}: gives 0 samples for {n_docs} documents; use at least --epochs {1 / n_docs:.3g} "
                             f"(or --samples 1)")
    else:
        return
    if s.sampler == "clusterclip" and not s.allow_partial and n > s.max_repeats * n_docs:
        return  # plan_schedule explains what the clip allows
    need = n * _BYTES_PER_SAMPLE
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * ram:
        raise InputError(f"{flag}: {n:,} samples need about {need / 2**30:,.0f} GiB of memory to plan, but this machine "
                         f"has {ram / 2**30:.0f} GiB; lower the budget")


class _Mix:
    """What the sampler gets besides the labels: cluster weights and clips, document scores, the
    documents SemDeDup keeps; and what of it goes into the manifest's settings."""

    def __init__(self):
        self.weights = None
        self.repeats = None
        self.doc_scores = None
        self.keep = None
        self.record: dict = {}

    def max_repeats(self, s: ScheduleSettings):
        if self.repeats is None:
            return s.max_repeats
        return np.where(self.repeats > 0, self.repeats, s.max_repeats)


def _mix_inputs(s: ScheduleSettings, emb: EmbedDir, cl: ClusterDir, labels: np.ndarray, say) -> _Mix:
    """Read --weights, --cluster-max-repeats, --doc-weight-column and run --dedup-threshold."""
    from .mixing import file_digest, parse_cluster_repeats, read_cluster_table, read_doc_scores, semantic_duplicates

    mix = _Mix()
    if s.weights is not None:
        mix.weights, repeats = read_cluster_table(s.weights, cl.k)
        mix.repeats = repeats if np.any(repeats) else None
        mix.record["weights_digest"] = file_digest(s.weights)
    if s.cluster_max_repeats is not None:
        mix.repeats = parse_cluster_repeats(s.cluster_max_repeats, cl.k, mix.repeats)
    if s.doc_weight_column is not None:
        mix.doc_scores = read_doc_scores(emb, s.doc_weight_column)
        if Path(s.doc_weight_column).is_file():
            mix.record["doc_weights_digest"] = file_digest(s.doc_weight_column)
    if s.dedup_threshold is not None:
        mix.keep = semantic_duplicates(emb.store(), labels, cl.centroids(), s.dedup_threshold)
        say(f"dedup: {int((~mix.keep).sum()):,} of {len(labels):,} documents are semantic duplicates "
            f"(cosine > {s.dedup_threshold:g} inside their cluster) and are left out")
    return mix


def _plan(labels: np.ndarray, s: ScheduleSettings, lengths, mix: _Mix | None = None) -> Schedule:
    mix = mix or _Mix()
    try:
        return plan_schedule(labels, sampler=s.sampler, max_repeats=s.max_repeats, alpha=s.alpha, samples=s.samples,
                             tokens=s.tokens, epochs=s.epochs, lengths=lengths, seed=s.seed,
                             allow_partial=s.allow_partial, balance=s.balance, cluster_weights=mix.weights,
                             cluster_max_repeats=mix.repeats, budget_tokens=s.budget_tokens,
                             doc_scores=mix.doc_scores, doc_power=s.doc_weight_power, keep=mix.keep)
    except BudgetError as e:
        raise InputError(f"{e}; or pass --allow-partial to write what is possible") from None
    except ValueError as e:  # a budget the corpus cannot reach (no documents or no tokens), or weights that draw nothing
        raise InputError(f"budget: {e}; check the budget and balancing options") from None
