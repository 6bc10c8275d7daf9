"""The ``embed`` step: documents -> L2-normalised embeddings (ClusterClip §1.1).

- :mod:`.settings` — :class:`EmbedSettings`, every option validated;
- :mod:`.encoder` — the :class:`Encoder` interface, device and precision; backends :mod:`.hf`
  (the default: Hugging Face model, masked mean pooling) and :mod:`.sentence_transformers`;
- :mod:`.batching` — length-sorted token-budget batches and sequence packing (free functions);
- where the parts are embedded: :mod:`clusterclip.engines` (``--engine``), through :class:`EmbedWriter`;
- :mod:`.directory` — :class:`EmbedDir` (the layout, reading a finished directory); :mod:`.store` —
  :class:`EmbeddingStore` (the embeddings as one matrix); :mod:`.writer` — :class:`EmbedWriter`;
- :mod:`.merge` — :func:`merge_embeddings`: the partitions of one job -> one directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from ..artifacts import Job, OutputDir, StepResult, build_manifest
from ..artifacts.corpus import describe_files
from ..artifacts.manifest import MANIFEST, is_ours, load_json
from ..engines import engine
from ..errors import InputError, MismatchError
from ..readers import Partitioning, expand_inputs, reader_for
from . import incremental as incremental_mod
from .directory import EmbedDir
from .encoder import DEFAULT_MODEL_NAME, Encoder, Prepared, check_cuda_device, make_encoder
from .settings import EmbedSettings
from .store import EmbeddingStore
from .writer import EmbedWriter

__all__ = ["DEFAULT_MODEL_NAME", "EmbedDir", "EmbedSettings", "EmbeddingStore", "Encoder", "Prepared",
           "embed_corpus", "make_encoder", "merge_embeddings"]

#: encoder settings a caller-supplied encoder must agree with (when set explicitly)
_ENCODER_KEYS = ("model", "max_length", "long_docs", "device", "dtype", "batch_tokens", "batch_size", "packing",
                 "compile")


def settings_from(settings, kwargs: dict, cls):
    """A settings object from ``settings`` or keyword arguments (not both)."""
    if settings is not None and kwargs:
        raise InputError(f"give either settings= or keyword settings ({', '.join(sorted(kwargs))}), not both")
    if settings is None:
        return cls.build(kwargs)
    if not isinstance(settings, cls):
        raise InputError(f"settings must be a {cls.__name__}, got {type(settings).__name__}")
    return settings


def embed_corpus(inputs, out_dir, settings: EmbedSettings | None = None, *, overwrite: bool = False,
                 progress: bool = True, encoder: Encoder | None = None, log: Callable[[str], None] | None = None,
                 **kwargs) -> StepResult:
    """Embed a corpus into ``out_dir`` (``docs.parquet``, ``embeddings-*.npy``, ``manifest.json``).

    ``inputs``: files, directories or globs. Settings come as an :class:`EmbedSettings` or as its
    fields in keyword arguments. A rerun of the same call after an interruption resumes after the
    last finished part; after success it does nothing (``result.state == "done"``). ``encoder``
    reuses a loaded encoder, which must agree with any encoder setting given explicitly.
    """
    t0 = time.perf_counter()
    s = settings_from(settings, kwargs, EmbedSettings)
    log = log or (lambda message: None)
    out = Path(out_dir)
    found = expand_inputs(inputs)
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
        log(f"embed: note: skipped {len(found.unsupported)} file(s) of other types in the input directories: "
            f"{shown}{more}")
    if s.engine == "local" and encoder is None:  # a missing GPU is refused at once, not after loading torch
        check_cuda_device(s.device)
    readers = [reader_for(f) for f in files]
    for r in readers:  # fail fast, before the model loads
        r.check(s.text_column, s.id_column)
    previous = load_json(out / MANIFEST)
    known = None
    if is_ours(previous) and previous.get("step") == "embed":
        known = {"records": (previous.get("inputs") or {}).get("files"), "stat_cache": previous.get("corpus_stat")}
    records, stat_cache = describe_files(files, known, rehash=s.rehash_inputs, progress=progress)
    runner = engine(s.engine)
    given = encoder
    encoder = runner.encoder(s, make=make_encoder, given=given, log=log)  # resolved where it runs (Ray: a worker)
    if given is not None:
        _check_encoder(encoder, s)
    resolved = {**s.record(), **encoder.settings}
    job = Job("embed", resolved, {"files": records})
    reusable = _check_previous(out, previous, job, s, overwrite)
    input_dirs = [Path(os.fspath(i)) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    with OutputDir(out, job, overwrite=overwrite or reusable, inputs=tuple(p for p in input_dirs if p.is_dir()),
                   log=log) as run:
        if run.state == "done":
            return StepResult(run.manifest, out, "done", time.perf_counter() - t0)
        run_engine = runner.embed_parts  # where the parts are embedded (the same signature for every engine)
        where = str(files[0]) if len(files) == 1 else f"{len(files)} input files"
        previous = run.previous  # as read under the lock (None when damaged)
        incremental = None
        if (reusable and previous is not None and previous.get("step") == "embed"
                and previous.get("settings") == resolved
                and (run.state == "fresh" or (run.build / incremental_mod.DELTA_DIR).is_dir())):
            (run.build / incremental_mod.DELTA_DIR).mkdir(exist_ok=True)
            p = incremental_mod.plan(previous, records)
            log(f"embed: --incremental: {len(p.reuse)} of {len(records)} files unchanged ({p.reused_docs:,} documents "
                f"reused), {len(p.embed)} to embed, {len(p.removed)} old files not reused")
            done = incremental_mod.run_incremental(out, run.build, previous, p, records, readers, s, encoder,
                                                   run_engine, resume=run.state == "resume", progress=progress,
                                                   log=log)
            outputs, totals, per_file, embedded = done["outputs"], done["totals"], done["per_file"], done["embedded"]
            incremental = done["record"]
            if totals["n_docs"] == 0:
                raise InputError(f"{where}: no documents; check --text-column {s.text_column!r} and the input files")
            rows = sum(f["rows"] for f in per_file)
            docs = sum(f["documents"] for f in per_file)
            stats_record = {"input_rows": rows, "documents": docs,
                            "skipped": {"empty": rows - docs, "empty_rows": incremental_mod.first_empty_rows(per_file)},
                            "other_partitions": 0}
            skipped_empty, complete = rows - docs, True
        else:
            writer = EmbedWriter(run.build, id_column=s.id_column, save_dtype=s.save_dtype)
            kept = writer.resume() if run.state == "resume" else []
            partition = Partitioning(s.num_partitions, s.partition_index, s.partition_block)
            stats, embedded = run_engine(readers, s, encoder, writer, partition, done_parts=len(kept),
                                         progress=progress)
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
            if s.limit is None and not s.partitioned and stats.complete and len(stats.per_file_rows) == len(records):
                per_file = incremental_mod.per_file_record(records, stats.per_file_rows, totals["per_source"],
                                                           stats.empty_by_file)
            stats_record, skipped_empty, complete = stats.record(), stats.skipped_empty, stats.complete
        statistics = {
            "n_docs": totals["n_docs"],
            "dim": totals["dim"] if totals["n_docs"] else encoder.dim,
            "skipped_empty": skipped_empty,
            "tokens": totals["tokens"],
            "truncated_docs": totals["truncated"],
            "input_rows": stats_record["input_rows"],
            "parts": totals["parts"],
            "part_rows": totals["part_rows"],
        }
        accounting = {**stats_record, "complete": complete, "limit": s.limit}
        extra = {"corpus_stat": stat_cache}
        if per_file is not None:
            extra["per_file"] = per_file
        if incremental is not None:
            extra["incremental"] = incremental
        manifest = build_manifest("embed", resolved, {"files": records}, outputs, statistics,
                                  accounting=accounting, extra=extra)
        run.commit(manifest)
    return StepResult(manifest, out, run.state, time.perf_counter() - t0, embedded)


def _check_previous(out: Path, previous: dict | None, job: Job, s: EmbedSettings, overwrite: bool) -> bool:
    """Whether ``--incremental`` may replace the embed output in ``out`` (reusing its vectors).

    Without ``--incremental`` or ``--overwrite``, an output of the same settings over another
    corpus is refused with the hint; with ``--incremental``, one of other settings is refused
    (its vectors cannot be reused) unless ``--overwrite``.
    """
    if not (is_ours(previous) and previous.get("step") == "embed") or job.same_as(previous):
        return False
    same = previous.get("settings") == job.settings
    if s.incremental and same:
        return True
    if overwrite:
        return False
    if s.incremental:
        why = "; ".join(incremental_mod.settings_differences(previous, job.settings))
        raise MismatchError(f"--incremental: {out} holds an embed run with other settings ({why}), whose vectors "
                            f"cannot be reused; pass --overwrite to embed everything again, or choose another --out")
    if same:
        p = incremental_mod.plan(previous, job.inputs["files"])
        raise MismatchError(f"{out}: holds an embed run of the same settings over another corpus ({len(p.embed)} "
                            f"new or changed files, {len(p.removed)} old ones changed or gone); pass --incremental to embed only "
                            f"those files, or --overwrite to embed everything again")
    return False


def _check_encoder(encoder, s: EmbedSettings) -> None:
    defaults = EmbedSettings()
    have = encoder.settings
    for key in _ENCODER_KEYS:
        wanted = getattr(s, key)
        if wanted != getattr(defaults, key) and key in have and have[key] != wanted:
            raise InputError(f"embed_corpus: the encoder given runs {key}={have[key]!r} but the settings ask for "
                             f"{wanted!r}; build the encoder from the same settings (make_encoder(settings))")


def merge_embeddings(*args, **kwargs):
    from .merge import merge_embeddings as merge

    return merge(*args, **kwargs)
