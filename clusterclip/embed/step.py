"""The ``embed`` step as a :class:`~clusterclip.steps.Step`: corpus files -> EMB (see :mod:`clusterclip.embed`).

:meth:`EmbedStep.plan` finds and checks the inputs (every file readable, the columns there), takes the
corpus's digests, resolves the encoder where it will run and decides whether ``--incremental`` may
reuse the output in ``--out``; :meth:`EmbedStep.run` embeds the parts (all of them, or with
``--incremental`` only the new and changed files) and returns the statistics and accounting; the
driver commits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..artifacts import Job
from ..artifacts.corpus import describe_files
from ..artifacts.manifest import MANIFEST, is_ours, load_json
from ..errors import InputError, MismatchError
from ..readers import Partitioning, expand_inputs, reader_for
from ..steps import Outcome, Plan, Run, Step
from . import incremental as incremental_mod
from .directory import EmbedStats, after_incremental
from .encoder import Encoder, make_encoder
from .pipeline import IN_PROCESS
from .settings import EmbedSettings
from .writer import EmbedWriter

#: encoder settings a caller-supplied encoder must agree with (when set explicitly)
_ENCODER_KEYS = ("model", "max_length", "long_docs", "device", "dtype", "batch_tokens", "batch_size", "packing",
                 "compile")


class EmbedStep(Step[EmbedSettings]):
    """Embed the documents of ``inputs`` (files, directories or globs)."""

    name = "embed"
    settings_class = EmbedSettings
    stats_class = EmbedStats

    def __init__(self, inputs: Sequence | str | os.PathLike, settings: EmbedSettings, *,
                 encoder: Encoder | None = None, **kwargs):
        super().__init__(settings, **kwargs)
        self.inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        self.given = encoder  #: a loaded encoder the caller reuses (it must agree with the settings)
        self.encoder = encoder
        self.readers: list = []
        self.records: list[dict] = []
        self.stat_cache: list[dict] = []
        self.where = ""

    def resolved_encoder(self) -> Encoder:
        """The encoder :meth:`plan` resolved (the caller's own when one was given)."""
        if self.encoder is None:
            raise RuntimeError("embed: the encoder is resolved by plan(); run the step with run_step")
        return self.encoder

    # ------------------------------------------------------------------ plan
    def plan(self, out: Path, overwrite: bool) -> Plan:
        s = self.settings
        files = self._input_files(out)
        runner = self.runner
        runner.check(s, self.given)  # e.g. a missing GPU, refused before torch loads
        self.readers = [reader_for(f) for f in files]
        for r in self.readers:  # fail fast, before the model loads
            r.check(s.text_column, s.id_column)
        previous = load_json(out / MANIFEST)
        known = None
        if is_ours(previous) and previous.get("step") == "embed":
            known = {"records": (previous.get("inputs") or {}).get("files"), "stat_cache": previous.get("corpus_stat")}
        self.records, self.stat_cache = describe_files(files, known, rehash=s.rehash_inputs, progress=self.progress)
        encoder = runner.encoder(s, make=make_encoder, given=self.given, log=self.log)  # resolved where it runs
        if self.given is not None:
            _check_encoder(encoder, s)
        self.encoder = encoder
        resolved = {**s.record(), **encoder.settings}
        inputs = {"files": self.records}
        reusable = _check_previous(out, previous, resolved, inputs, s, overwrite)
        self.where = str(files[0]) if len(files) == 1 else f"{len(files)} input files"
        dirs = tuple(p for p in (Path(os.fspath(i)) for i in self.inputs) if p.is_dir())
        return Plan(resolved, inputs, reads=dirs, replaces=reusable)

    def _input_files(self, out: Path) -> list[Path]:
        """The corpus files (never inside ``--out``, which this run replaces); other file types are noted."""
        found = expand_inputs(self.inputs)
        out_resolved = out.resolve()
        for f in found.named:
            if out_resolved in f.parents:
                raise InputError(f"{f}: lies inside --out {out}, which this run replaces; move the file out of it or "
                                 f"choose another --out")
        files = [f for f in found.files if out_resolved not in f.parents]  # our own outputs are never inputs
        if not files:
            raise InputError(f"--out {out}: the inputs hold nothing but this output directory; give the corpus files")
        if found.unsupported:
            shown = ", ".join(str(p) for p in found.unsupported[:5])
            more = f" and {len(found.unsupported) - 5} more" if len(found.unsupported) > 5 else ""
            self.log(f"embed: note: skipped {len(found.unsupported)} file(s) of other types in the input directories: "
                     f"{shown}{more}")
        return files

    @property
    def runner(self):
        """Where the parts are embedded: the engine's own streaming runner (Ray Data on Ray), else this
        process's pipeline (:mod:`.pipeline`). Both write through the same ``EmbedWriter``."""
        return self.engine.runner("embed") or IN_PROCESS

    # ------------------------------------------------------------------ run
    def run(self, run: Run) -> Outcome:
        previous = run.previous  # as read under the lock (None when damaged)
        delta = run.build / incremental_mod.DELTA_DIR
        if (run.plan.replaces and previous is not None and previous.get("step") == "embed"
                and previous.get("settings") == run.plan.settings and (not run.resume or delta.is_dir())):
            return self._run_incremental(run, previous)
        return self._run_whole(run)

    def _run_incremental(self, run: Run, previous: dict) -> Outcome:
        """``--incremental``: embed the new and changed files only, reuse the others' vectors (checked)."""
        s, records = self.settings, self.records
        (run.build / incremental_mod.DELTA_DIR).mkdir(exist_ok=True)
        p = incremental_mod.plan(previous, records)
        self.log(f"embed: --incremental: {len(p.reuse)} of {len(records)} files unchanged ({p.reused_docs:,} "
                 f"documents reused), {len(p.embed)} to embed, {len(p.removed)} old files not reused")
        done = incremental_mod.run_incremental(run.out, run.build, previous, p, records, self.readers, s,
                                               self.encoder, self.runner.embed_parts, resume=run.resume,
                                               progress=self.progress, log=self.log)
        totals, per_file = done["totals"], done["per_file"]
        if totals["n_docs"] == 0:
            raise InputError(f"{self.where}: no documents; check --text-column {s.text_column!r} and the input files")
        rows = sum(f["rows"] for f in per_file)
        docs = sum(f["documents"] for f in per_file)
        stats_record = {"input_rows": rows, "documents": docs,
                        "skipped": {"empty": rows - docs, "empty_rows": incremental_mod.first_empty_rows(per_file)},
                        "other_partitions": 0}
        return self._outcome(done["outputs"], totals, stats_record, rows - docs, True, per_file, done["record"],
                             done["embedded"])

    def _run_whole(self, run: Run) -> Outcome:
        """Every document of this partition, in parts of ``--part-docs`` (a resumed run keeps its finished parts)."""
        s, encoder, where = self.settings, self.resolved_encoder(), self.where
        writer = EmbedWriter(run.build, id_column=s.id_column, save_dtype=s.save_dtype)
        kept = writer.resume() if run.resume else []
        partition = Partitioning(s.num_partitions, s.partition_index, s.partition_block)
        stats, embedded = self.runner.embed_parts(self.readers, s, encoder, writer, partition, done_parts=len(kept),
                                                  progress=self.progress)
        stats.check(where)
        if not writer.journal:
            if not s.partitioned or stats.rows == 0:
                what = (f"all {stats.skipped_empty} documents are empty (whitespace only)" if stats.skipped_empty
                        else "no documents")
                raise InputError(f"{where}: {what}; check --text-column {s.text_column!r} and the input files")
            writer.write_part(0, None, [], [], [], [], [], 0, dim=encoder.dim)  # a partition that owns no document
        outputs, totals = writer.finish()
        if s.limit is None and totals["n_docs"] != stats.documents:
            raise InputError(f"{where}: accounting failed: {stats.documents} documents read but "
                             f"{totals['n_docs']} embedded; nothing was written. This is a bug: please report it "
                             f"with the command")
        per_file = None
        if s.limit is None and not s.partitioned and stats.complete and len(stats.per_file_rows) == len(self.records):
            per_file = incremental_mod.per_file_record(self.records, stats.per_file_rows, totals["per_source"],
                                                       stats.empty_by_file)
        return self._outcome(outputs, totals, stats.record(), stats.skipped_empty, stats.complete, per_file, None,
                             embedded)

    def _outcome(self, outputs: list[dict], totals: dict, stats_record: dict, skipped_empty: int, complete: bool,
                 per_file: list | None, incremental: dict | None, embedded: int) -> Outcome:
        statistics = EmbedStats(
            n_docs=totals["n_docs"],
            dim=totals["dim"] if totals["n_docs"] else self.resolved_encoder().dim,
            skipped_empty=skipped_empty,
            tokens=totals["tokens"],
            truncated_docs=totals["truncated"],
            input_rows=stats_record["input_rows"],
            parts=totals["parts"],
            part_rows=totals["part_rows"],
        )
        accounting = {**stats_record, "complete": complete, "limit": self.settings.limit}
        extra: dict = {"corpus_stat": self.stat_cache}
        if per_file is not None:
            extra["per_file"] = per_file
        if incremental is not None:
            extra["incremental"] = incremental
        # --incremental: the output replaced stays readable for what was made from it (clusters, schedules)
        return Outcome(outputs, statistics, accounting=accounting, extra=extra, processed=embedded,
                       keep_previous=incremental is not None)

    # ------------------------------------------------------------------ summary
    def summary(self, result) -> str:
        st, s = result.statistics, result.settings
        rate = result.processed / result.seconds if result.seconds > 0 else 0.0
        part = f", partition {s['partition_index']}/{s['num_partitions']}" if s.get("num_partitions", 1) > 1 else ""
        limit = f" (--limit {s['limit']})" if s.get("limit") else ""
        resumed = " (resumed)" if result.state == "resume" else ""
        inc = result.manifest.get("incremental")
        if inc:
            resumed += (f" (incremental: {len(inc['embedded'])} files embedded, {len(inc['reused'])} reused "
                        f"= {inc['reused_docs']:,} docs, {len(inc['dropped'])} old files dropped)")
        encoder = "" if s.get("backend", "hf") == "hf" else f"{s['backend']} "
        line = (f"embed: {st['n_docs']:,} docs{part}{limit}, dim {st['dim']}, {st['skipped_empty']:,} empty skipped, "
                f"{st.get('truncated_docs', 0):,} truncated at --max-length {s['max_length']}{truncation_hint(st, s)}, "
                f"{st['tokens']:,} tokens, {encoder}{s['device']} {s['dtype']}, in {result.seconds:.1f} s "
                f"({rate:,.1f} docs/s){resumed} -> {result.out}")
        if inc and not result.already_done:
            line += (f"\nembed: what was made from {result.out} before (clusters, schedules, reports) still reads it "
                     f"as it was, kept in {result.out}/.clusterclip/generations/; next: {after_incremental(result.out)}")
        return line


STEP = EmbedStep


def truncation_hint(statistics: dict, settings: dict) -> str:
    """When most documents were cut at --max-length: that only their start is embedded, and what embeds all."""
    truncated, n = statistics.get("truncated_docs") or 0, statistics.get("n_docs") or 0
    if not n or 2 * truncated <= n or settings.get("long_docs", "truncate") != "truncate":
        return ""
    how = ("--long-docs chunk-mean embeds all of each" if settings.get("backend", "hf") in ("hf", "model2vec")
           else "raise --max-length")
    return f" ({100 * truncated // n} %: only their first {settings['max_length']} tokens are embedded; {how})"


def _check_previous(out: Path, previous: dict | None, settings: dict, inputs: dict, s: EmbedSettings,
                    overwrite: bool) -> bool:
    """Whether ``--incremental`` may replace the embed output in ``out`` (reusing its vectors).

    Without ``--incremental`` or ``--overwrite``, an output of the same settings over another
    corpus is refused with the hint; with ``--incremental``, one of other settings is refused
    (its vectors cannot be reused) unless ``--overwrite``.
    """
    if previous is None or not (is_ours(previous) and previous.get("step") == "embed"):
        return False
    if Job("embed", settings, inputs).same_as(previous):
        return False  # the same job: done (or resumed)
    same = previous.get("settings") == settings
    if s.incremental and same:
        return True
    if overwrite:
        return False
    if s.incremental:
        why = "; ".join(incremental_mod.settings_differences(previous, settings))
        raise MismatchError(f"--incremental: {out} holds an embed run with other settings ({why}), whose vectors "
                            f"cannot be reused; pass --overwrite to embed everything again, or choose another --out")
    if same:
        p = incremental_mod.plan(previous, inputs["files"])
        if not p.embed and not p.removed:
            raise MismatchError(f"{out}: holds an embed run of the same settings over the same files at other "
                                f"paths{_moved_example(p, inputs['files'])}; pass --incremental to record the new "
                                f"paths (nothing is embedded again), or --overwrite to embed everything again")
        raise MismatchError(f"{out}: holds an embed run of the same settings over another corpus ({len(p.embed)} "
                            f"new or changed files, {len(p.removed)} old ones changed or gone); pass --incremental to "
                            f"embed only those files, or --overwrite to embed everything again")
    return False


def _moved_example(p: incremental_mod.Plan, records: list[dict]) -> str:
    """`` (NEW was OLD)`` for the first file whose recorded path differs, else nothing."""
    for i, (entry, _) in sorted(p.reuse.items()):
        if entry["path"] != records[i]["path"]:
            return f" ({records[i]['path']} was {entry['path']})"
    return ""


def _check_encoder(encoder, s: EmbedSettings) -> None:
    defaults = EmbedSettings()
    have = encoder.settings
    for key in _ENCODER_KEYS:
        wanted = getattr(s, key)
        if wanted != getattr(defaults, key) and key in have and have[key] != wanted:
            raise InputError(f"embed_corpus: the encoder given runs {key}={have[key]!r} but the settings ask for "
                             f"{wanted!r}; build the encoder from the same settings (make_encoder(settings))")
