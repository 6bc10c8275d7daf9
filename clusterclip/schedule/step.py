"""The ``schedule`` step as a :class:`~clusterclip.steps.Step`: EMB + CL -> OUT (see :mod:`clusterclip.schedule`).

:meth:`ScheduleStep.plan` checks that the directories belong together, loads the tokenizer, reads
what the sampler is told besides the clusters (weights, clips, document scores, SemDeDup) and plans
the order, all before ``--out`` is touched (a token budget first needs every document's length, so
it is planned in :meth:`ScheduleStep.run`, after tokenizing); :meth:`ScheduleStep.run` writes
``order.parquet``, tokenizes the used documents once and writes the shards; the driver commits.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..errors import ClusterClipError, InputError
from ..faults import checkpoint
from ..steps import Outcome, Plan, Run, Step
from .directory import INDEX_FILE, LAW_FILE, ORDER_FILE, WORK_DIR, ScheduleStats, write_law, write_order
from .law import Budget, RepeatGap, SamplingLaw, Stage, StageSpan, law_table
from .sampling import BudgetError, Prefix, Schedule, epochs_to_samples, plan_schedule
from .settings import ScheduleSettings
from .stats import format_statistics, schedule_statistics, stage_statistics
from .target import budget_record, format_budget, mix_record
from .tokenize import build_tokens

if TYPE_CHECKING:
    from ..tokens.cache import TokenCache
    from ..tokens.tokenizer import Tokenizer
    from .continuation import Continued
    from .stages import StagedLaws

#: bytes of memory per planned sample (doc_id int64, cluster int32, repeat int32, plus working copies)
_BYTES_PER_SAMPLE = 40
#: the build's note of what the token cache gave this output (see _first_record)
CACHE_RECORD = "token-cache.json"


class ScheduleStep(Step[ScheduleSettings]):
    """The training order of the documents of ``emb`` by the clusters of ``cl``, and its token shards."""

    name = "schedule"
    settings_class = ScheduleSettings
    stats_class = ScheduleStats

    def __init__(self, emb: EmbedDir, cl: ClusterDir, settings: ScheduleSettings, *,
                 weights_from: str | os.PathLike | None = None, **kwargs):
        super().__init__(settings, **kwargs)
        self.emb, self.cl = emb, cl
        #: where the --weights file is read now, when it is still being built (``mixtures``: in its build
        #: directory); the manifest records ``settings.weights``, the path it will have, and the same digest
        self.weights_from = weights_from
        self.evaluation = _excluded(settings.exclude)
        self.labels: np.ndarray = np.zeros(0, np.int64)
        self.tok: Tokenizer | None = None
        self.mix = _Mix()
        self.schedule: Schedule | None = None  #: planned in plan() unless it needs the documents' lengths
        self.cache: TokenCache | None = None  #: the token cache (``--token-cache``), or None
        self.cached: list = []  #: the cached stores this run reads (released when it ends)
        self.cache_record: dict | None = None  #: the manifest's ``token_cache``

    @classmethod
    def open(cls, emb_dir, cl_dir, settings: ScheduleSettings, **kwargs) -> ScheduleStep:
        return cls(EmbedDir(emb_dir), ClusterDir(cl_dir), settings, **kwargs)

    def upstream(self) -> dict:
        ups: dict = {"embed": self.emb, "cluster": self.cl}
        if self.evaluation is not None:
            ups["exclude"] = self.evaluation
        if self.mix.continued is not None:
            ups["continue"] = self.mix.continued.old
        return ups

    # ------------------------------------------------------------------ plan
    def plan(self, out: Path, overwrite: bool) -> Plan:
        s, emb, cl = self.settings, self.emb, self.cl
        cl.check_belongs_to(emb)
        self.labels = cl.labels()
        _check_budget_size(s, len(self.labels))
        if s.tokenizer:
            from ..tokens.tokenizer import load_with_delimiters

            self.tok = load_with_delimiters(s)
        tok = self.tok
        # the tokenizer's identity, not which backend runs it (a fallback to tokenizers changes no token)
        record = {**s.record(), "tokenizer_digest": tok.describe(with_backend=False) if tok else None,
                  "eos_id": tok.eos_id if tok else None, "bos_id": tok.bos_id if tok else None}
        self.mix = _mix_inputs(s, emb, cl, self.labels, self.log, self.weights_from)
        if self.evaluation is not None:  # --exclude EVAL: its held-out documents are never drawn
            self.evaluation.check_made_from(emb, cl)
            self.mix.exclude = np.zeros(len(self.labels), bool)
            self.mix.exclude[self.evaluation.heldout()[0]] = True
        _course_inputs(self.mix, s, emb, cl, record)
        record.update(self.mix.record)
        if tok is not None and (self.needs_lengths or not s.dry_run):
            from ..tokens.cache import TokenCache

            inputs = [up.path for up in self.upstream().values()]
            self.cache = TokenCache.for_run(s.token_cache, inputs=inputs, out=out)
        if not self.needs_lengths:  # plan before anything in --out is touched: a budget error changes nothing
            self.schedule = _plan(self.labels, s, None, self.mix)
        return Plan(record, self.upstream_records())

    @property
    def needs_lengths(self) -> bool:
        """A token budget, token balance or per-cluster token budgets need every document's length first."""
        s = self.settings
        return (s.tokens is not None or s.balance == "tokens" or s.budget_tokens is not None
                or (s.min_repeat_gap > 0 and s.repeat_gap_unit == "tokens") or s.at_tokens is not None
                or (self.mix.staged is not None and self.mix.staged.needs_lengths))

    def preflight(self) -> None:
        if not self.settings.dry_run:  # a dry run writes the order only: the engine has nothing to do
            super().preflight()

    # ------------------------------------------------------------------ run
    def run(self, run: Run) -> Outcome:
        try:
            return self._run(run)
        finally:
            for cached in self.cached:  # the cache may delete (or extend) the stores this run read
                cached.release()
            self.cached = []

    def _run(self, run: Run) -> Outcome:
        s, build = self.settings, run.build
        n_docs = len(self.labels)
        work = build / WORK_DIR
        work.mkdir(exist_ok=True)
        store = known = None
        lengths = None
        schedule = self.schedule
        if self.needs_lengths:  # tokenize everything first (the token store), then sample by lengths
            store, known = self._token_store(np.arange(n_docs), work)
            lengths = sample_lengths(store, self.delimiters, known)
            schedule = _plan(self.labels, s, lengths, self.mix)
        assert schedule is not None
        if self.mix.exclude is not None and np.any(self.mix.exclude[schedule.doc_id]):
            raise ClusterClipError("schedule: a held-out document of --exclude was drawn; this is a bug: please "
                                   "report it with the command")
        plan_lengths = lengths  # what the sampler planned with (None: no token budget or balance needed them)
        if not s.dry_run and store is None:  # the used documents, tokenized once
            store, known = self._token_store(np.unique(schedule.doc_id), work)
            lengths = sample_lengths(store, self.delimiters, known)
        # every sample's tokens beside it, when they were counted (positions in tokens for the report and trainers)
        sample_tokens = None if lengths is None else lengths[schedule.doc_id]
        write_order(build / ORDER_FILE, schedule, sample_tokens)
        law = _law_of(self.labels, s, schedule, plan_lengths, self.mix, self.cl.k)
        write_law(build / LAW_FILE, law)
        checkpoint("schedule.order")
        names: list[str | dict] = [ORDER_FILE, LAW_FILE]
        index = None
        if not s.dry_run:
            assert store is not None
            index = self._write_shards(run, schedule, store, work)
            names += [INDEX_FILE, *_shard_file_records(index)]
        stats = schedule_statistics(schedule, n_docs=n_docs, n_clusters=self.cl.k, lengths=lengths, labels=self.labels,
                                    max_repeats=self.mix.max_repeats(s) if s.sampler == "clusterclip" else None,
                                    lengths_known=known if store is not None else None,
                                    keep=self.mix.keep)
        stats["budget"] = budget_record(s, stats, n_docs=n_docs, sample_tokens=sample_tokens, lengths=lengths,
                                        lengths_known=known if store is not None else None)
        if self.mix.exclude is not None:
            stats["excluded_docs"] = int(self.mix.exclude.sum())
        if schedule.staged:
            stats["stages"] = stage_statistics(schedule, self.cl.k, lengths)
        if schedule.stalled:
            stats["stalled"] = True
        if self.mix.continued is not None:
            stats["continued"] = self.mix.continued.record(self.mix.prefix)
        if self.mix.prefix is None:  # asked (the law's draw weights over each stage) vs got, per cluster
            stats["budget"]["mix"] = mix_record(law, stats, balance=s.balance)
        if index is not None:
            stats["shards"] = {fmt: len(v) for fmt, v in index["shards"].items()}
        if store is not None:
            stats["tokenizer_backend"] = store.meta.get("backend")
            stats["tokenizer_backend_reason"] = store.meta.get("backend_reason")
        shutil.rmtree(work, ignore_errors=True)
        accounting = {"samples": len(schedule), "order_rows": len(schedule),
                      "shard_samples": {f: sum(x["samples"] for x in v) for f, v in index["shards"].items()}
                      if index else None}  # write_shards checked that every format holds exactly the order
        extra = {"token_cache": self.cache_record} if self.cache_record is not None else None
        return Outcome(names, ScheduleStats.from_json(stats), accounting=accounting, extra=extra, processed=len(schedule))

    @property
    def delimiters(self) -> int:
        tok = self.tok
        return ((tok.bos_id is not None) + (tok.eos_id is not None)) if tok else 0

    def _token_store(self, doc_ids: np.ndarray, work: Path):
        """``(store, known)``: a token store holding ``doc_ids`` (each tokenized once, where the engine runs it; from
        the token cache when it has them) and the mask of ``doc_ids`` (what this run counts tokens of: a cached store
        may hold more)."""
        known: np.ndarray = np.zeros(len(self.labels), dtype=bool)
        known[doc_ids] = True

        checked = self.settings.replace(rehash_inputs=False)  # obtain_tokens checks the corpus (once) first

        def build(ids: np.ndarray, path: Path):
            return build_tokens(self.engine, checked, self.emb, ids, len(self.labels), self.tok, path,
                                progress=self.progress)

        from ..tokens.cache import obtain_tokens

        cached = obtain_tokens(self.emb, self.tok, doc_ids, cache=self.cache, path=work / "tokens", build=build,
                               rehash=self.settings.rehash_inputs, progress=self.progress, log=self.log)
        self.cached.append(cached)
        if cached.record is not None:
            self.cache_record = _first_record(work / CACHE_RECORD, cached.record)
        return cached.store, known

    def _write_shards(self, run: Run, schedule: Schedule, store, work: Path) -> dict:
        from ..shards import CONVENTION_MIN_SHARDS, write_shards
        from ..shards.tasks import engine_runner

        s, tok = self.settings, self.tok
        assert tok is not None
        return write_shards(schedule.doc_id, schedule.cluster, schedule.repeat, store, run.build,
                            formats=s.formats, shard_tokens=s.shard_tokens, eos_id=tok.eos_id,
                            bos_id=tok.bos_id, vocab_size=tok.vocab_size, align_tokens=s.align_tokens,
                            pack=s.pack, journal_path=work / "shards-journal.jsonl", progress=self.progress,
                            resume=run.resume, run_shards=engine_runner(self.engine, s),
                            min_shards=CONVENTION_MIN_SHARDS.get(s.convention or "", 1),
                            keep_shard_tokens=self._continued_shard_tokens())

    def _continued_shard_tokens(self) -> int | None:
        """The shard size OLD cut at, for ``--continue`` (the shards before the point are then cut the same way;
        a shard size lowered to give a convention its files depends on the whole stream's length)."""
        continued = self.mix.continued
        if continued is None or continued.old.dry_run:
            return None
        return int(continued.old.shards_index()["shard_tokens"])

    # ------------------------------------------------------------------ summary
    def summary(self, result) -> str:
        stats = result.statistics
        what = "order only (dry run)" if self.settings.dry_run else f"shards: {', '.join(self.settings.formats)}"
        budget = "\n".join(format_budget(stats["budget"])) + "\n" if "budget" in stats else ""
        return (f"{format_statistics(stats)}\n{budget}schedule: {stats['samples']:,} samples from "
                f"{stats['unique_docs_used']:,} documents, {what} -> {result.out} in {result.seconds:.1f}s")

    def warnings(self, result) -> list[str]:
        return [] if result.already_done else list(result.statistics.get("warnings", []))


STEP = ScheduleStep


def _excluded(path):
    """The ``holdout`` directory of ``--exclude`` (its owner), or None."""
    if path is None:
        return None
    from ..proxy.evaldir import EvalDir

    return EvalDir(path)


def sample_lengths(store, delimiters: int, known: np.ndarray | None = None) -> np.ndarray:
    """Tokens of each document's sample (document + delimiters); 0 for documents not tokenized (or not ``known``)."""
    lengths = store.lengths.astype(np.int64)
    have = lengths >= 0 if known is None else known
    return np.where(have, lengths + delimiters, 0)


def _first_record(path: Path, record: dict) -> dict:
    """The token cache record of this output's first attempt (kept in its build, so a resumed run whose killed
    attempt filled the cache records what an uninterrupted run would), else ``record``."""
    from ..artifacts import write_json_atomic
    from ..artifacts.manifest import load_json

    first = load_json(path)
    if first is not None and first.get("key") == record["key"]:
        return first
    write_json_atomic(path, record)
    return record


def _shard_file_records(index: dict) -> list[dict]:
    """The records of every shard file (and of each format's dataset files), as the writers hashed them."""
    records: list[dict] = []
    for fmt_shards in index["shards"].values():
        for shard in fmt_shards:
            records.extend(shard["files"])
    for files in (index.get("dataset_files") or {}).values():
        records.extend(files)
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
        self.keep = None  #: the documents SemDeDup keeps (None: all)
        self.exclude = None  #: the held-out documents of --exclude (None: none)
        self.staged: StagedLaws | None = None  #: --stages
        self.continued: Continued | None = None  #: --continue
        self.prefix: Prefix | None = None  #: OLD's samples continued (known once the lengths are, for --at-tokens)
        self.record: dict = {}

    def drawable(self):
        """The documents the sampler may draw: SemDeDup's and not held out (None: every document)."""
        if self.exclude is None:
            return self.keep
        return ~self.exclude if self.keep is None else self.keep & ~self.exclude

    def max_repeats(self, s: ScheduleSettings):
        if self.repeats is None:
            return s.max_repeats
        return np.where(self.repeats > 0, self.repeats, s.max_repeats)


def _mix_inputs(s: ScheduleSettings, emb: EmbedDir, cl: ClusterDir, labels: np.ndarray, say,
                weights_from: str | os.PathLike | None = None) -> _Mix:
    """Read --weights (from ``weights_from`` when given), --cluster-max-repeats, --doc-weight-column and run
    --dedup-threshold."""
    from .mixing import file_digest, parse_cluster_repeats, read_cluster_table, read_doc_scores, semantic_duplicates

    mix = _Mix()
    if s.weights is not None:
        weights = s.weights if weights_from is None else str(weights_from)
        mix.weights, repeats = read_cluster_table(weights, cl.k)
        mix.repeats = repeats if np.any(repeats) else None
        mix.record["weights_digest"] = file_digest(weights)
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


def _course_inputs(mix: _Mix, s: ScheduleSettings, emb: EmbedDir, cl: ClusterDir, record: dict) -> None:
    """Read --stages and open --continue's OLD (checked against these inputs and settings)."""
    if s.stages is not None:
        from .stages import read_stage_tables, stage_laws

        defaults = {name: getattr(s, name) for name in ("sampler", "alpha", "balance", "max_repeats", "weights",
                                                         "cluster_max_repeats", "doc_weight_power")}
        mix.staged = stage_laws(read_stage_tables(s.stages), defaults, cl.k, doc_scores=mix.doc_scores,
                                keep=mix.drawable(), has_tokenizer=bool(s.tokenizer))
        mix.record["stage_laws"] = mix.staged.record
    if s.continue_from is not None:
        from .continuation import Continued

        mix.continued = Continued(s.continue_from, s.at_sample, s.at_tokens)
        mix.continued.check_matches(emb, cl, record)


def _law(s: ScheduleSettings, mix: _Mix) -> SamplingLaw:
    return SamplingLaw(sampler=s.sampler, max_repeats=s.max_repeats, alpha=s.alpha, balance=s.balance,
                       cluster_weights=mix.weights, cluster_max_repeats=mix.repeats, doc_scores=mix.doc_scores,
                       doc_power=s.doc_weight_power, keep=mix.drawable())


def _plan(labels: np.ndarray, s: ScheduleSettings, lengths, mix: _Mix | None = None) -> Schedule:
    mix = mix or _Mix()
    if mix.continued is not None and (s.at_sample or s.at_tokens):
        mix.prefix = mix.continued.prefix(lengths, mix.exclude)
    subject = f"--stages {s.stages}" if mix.staged is not None else "budget"
    try:
        law = mix.staged.stages if mix.staged is not None else _law(s, mix)
        budget = Budget(samples=s.samples, tokens=s.tokens, epochs=s.epochs, budget_tokens=s.budget_tokens)
        return plan_schedule(labels, law, budget, lengths=lengths, seed=s.seed, allow_partial=s.allow_partial,
                             gap=RepeatGap(s.min_repeat_gap, s.repeat_gap_unit), prefix=mix.prefix)
    except BudgetError as e:
        raise InputError(f"{e}; or pass --allow-partial to write what is possible") from None
    except ValueError as e:  # a budget the corpus cannot reach (no documents or no tokens), or weights that draw nothing
        raise InputError(f"{subject}: {e}; check the budget and balancing options") from None


def _law_of(labels: np.ndarray, s: ScheduleSettings, schedule: Schedule, lengths, mix: _Mix, k: int) -> dict:
    """The table of ``law.parquet``: the law of every stage planned here (a continued order's prefix keeps OLD's)."""
    stages = mix.staged.stages if mix.staged is not None else [Stage(_law(s, mix))]
    prefix = mix.prefix
    first = len(prefix.spans) if prefix is not None else 0
    used = np.bincount(prefix.cluster, minlength=k) if prefix is not None else None
    return law_table(stages, labels, schedule.spans[first:] or (StageSpan(0, len(schedule)),),
                     lengths=lengths,
                     used=used, budget_tokens=s.budget_tokens, cluster_budget=schedule.cluster_budget, n_clusters=k,
                     first_stage=first)
