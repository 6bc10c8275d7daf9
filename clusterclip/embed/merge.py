"""``clusterclip merge``: the partition directories of one ``embed --num-partitions N`` job -> one directory.

The result is the directory a one-shot ``embed`` of the same inputs would have written: documents
in input order (file order, then row), ``doc_id`` dense from 0, the same ``docs.parquet`` columns,
and the embeddings copied bit for bit from the partitions, which batched every document with the
same neighbours as a one-shot run (:func:`~clusterclip.readers.base.batch_window`): with the same settings the
``embeddings-*.npy`` and ``docs.parquet`` bytes are the one-shot run's. Every partition is verified in full
(sizes and sha256 of every file) before anything is read, and the row accounting of all partitions
together must cover every input row exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..artifacts import Job, OutputDir, StepResult, build_manifest
from ..errors import InputError, MismatchError
from ..progress import bar as progress_bar
from ..readers.base import EMPTY_ROWS_LISTED
from .directory import EmbedDir
from .writer import EmbedWriter, common_id_type

#: settings every partition of one job must share (the rest, e.g. device or batch size, may differ)
SHARED_SETTINGS = ("text_column", "id_column", "backend", "model", "max_length", "long_docs", "prompt_name",
                   "pooling", "normalize", "save_dtype", "num_partitions", "partition_block", "window_docs",
                   "part_docs", "limit")


def merge_embeddings(part_dirs: Sequence, out_dir, *, overwrite: bool = False, progress: bool = True,
                     log: Callable[[str], None] | None = None) -> StepResult:
    """Merge the ``embed`` directories of all partitions of one job into ``out_dir``."""
    import pyarrow as pa

    t0 = time.perf_counter()
    dirs = [Path(d) for d in part_dirs]
    if not dirs:
        raise InputError("merge: give the embed directories of all partitions")
    parts = [EmbedDir(d) for d in dirs]
    first = parts[0]
    n = int(first.settings.get("num_partitions", 1))
    for p in parts:
        for key in SHARED_SETTINGS:
            if p.settings.get(key) != first.settings.get(key):
                raise MismatchError(f"{p.path}: setting {key}={p.settings.get(key)!r} differs from {first.path}'s "
                                    f"{first.settings.get(key)!r}; merge only the partitions of one `embed` job")
        if p.corpus_files != first.corpus_files:
            raise MismatchError(f"{p.path}: embedded other input files (or other versions of them) than {first.path}; "
                                f"merge only the partitions of one job, rerun those whose inputs changed")
        if p.settings.get("limit") is not None:
            raise InputError(f"{p.path}: embedded with --limit; merge needs complete partitions, rerun without it")
    if n == 1:
        raise InputError(f"{first.path}: not a partition (embedded with --num-partitions 1); it is already complete")
    by_index: dict[int, EmbedDir] = {}
    for p in parts:
        i = int(p.settings["partition_index"])
        if i in by_index:
            raise MismatchError(f"{p.path}: partition {i} is given twice (also {by_index[i].path}); give each once")
        by_index[i] = p
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise InputError(f"{first.path}: partition(s) {', '.join(map(str, missing))} of {n} missing; run "
                         f"`clusterclip embed ... --num-partitions {n} --partition-index I` for them and give all")
    ordered = [by_index[i] for i in range(n)]
    _check_accounting(ordered)
    settings = dict(ordered[0].settings)
    settings.update(num_partitions=1, partition_index=0)
    inputs = {"files": first.corpus_files, "partitions": [p.record() for p in ordered]}
    out = Path(out_dir)
    job = Job("embed", settings, inputs)
    with OutputDir(out, job, overwrite=overwrite, inputs=tuple(dirs), log=log, resumable=False) as run:
        if run.state == "done":
            return StepResult(run.manifest, out, "done", time.perf_counter() - t0)
        for p in ordered:  # every byte read is checked against what the partition recorded
            p.verify()
        id_column = settings.get("id_column")
        file_index = {r["path"]: i for i, r in enumerate(first.corpus_files)}
        keys_file, keys_row, tables, stores = [], [], [], []
        for p in ordered:
            t = p.docs_table()
            src = t.column("source").to_pylist()
            try:
                keys_file.append(np.fromiter((file_index[s] for s in src), dtype=np.int64, count=len(src)))
            except KeyError as e:
                raise MismatchError(f"{p.docs_file()}: names a source {e} that is not among the inputs; "
                                    f"the partition is damaged, rerun it") from None
            keys_row.append(t.column("row").to_numpy().astype(np.int64))
            tables.append(t.drop_columns(["source"]))
            stores.append(p.store())
        dims = {s.dim for s, t in zip(stores, tables) if t.num_rows}
        if len(dims) > 1:
            raise MismatchError(f"partitions disagree on the embedding dimension ({sorted(dims)}); rerun them with one model")
        kf, kr = np.concatenate(keys_file), np.concatenate(keys_row)
        perm = np.lexsort((kr, kf))
        if len(perm) == 0:
            raise InputError(f"{ordered[0].path}: the partitions hold no documents (all empty?); check the inputs "
                             f"and --text-column")
        if len(perm) > 1:
            sf, sr = kf[perm], kr[perm]
            dup = np.nonzero((sf[1:] == sf[:-1]) & (sr[1:] == sr[:-1]))[0]
            if len(dup):
                raise MismatchError(f"{first.corpus_files[sf[dup[0]]]['path']}, row {sr[dup[0]]}: embedded by two "
                                    f"partitions; merge only the partitions of one job")
        offsets = np.cumsum([0] + [t.num_rows for t in tables])
        n_chars_all = np.concatenate([t.column("n_chars").to_numpy() for t in tables])
        ids_all = None
        if id_column is not None:
            id_type = common_id_type([t.schema.field(id_column).type for t in tables])
            ids_all = pa.chunked_array([t.column(id_column).cast(id_type) for t in tables], type=id_type).combine_chunks()
        sources = [r["path"] for r in first.corpus_files]
        part_docs = int(settings["part_docs"])
        dim = dims.pop() if dims else stores[0].dim
        writer = EmbedWriter(run.build, id_column=id_column, save_dtype=settings["save_dtype"])
        writer.resume()  # merging is fast: a killed merge starts again (resume drops nothing valid)
        writer.journal.clear()
        shard_of = np.searchsorted(offsets, perm, side="right") - 1
        bar = progress_bar(len(perm), desc="merge", unit="doc", unit_scale=True, enabled=progress)
        try:
            for k, start in enumerate(range(0, len(perm), part_docs)):
                sel = perm[start : start + part_docs]
                sh = shard_of[start : start + part_docs]
                block = np.empty((len(sel), dim), dtype=np.float32)
                for s in np.unique(sh):
                    m = np.nonzero(sh == s)[0]
                    block[m] = stores[s].take(sel[m] - offsets[s])
                writer.write_part(k, block, pa.array([sources[i] for i in kf[sel]], type=pa.string()), kr[sel],
                                  n_chars_all[sel], np.zeros(len(sel), dtype=np.int64),
                                  ids_all.take(pa.array(sel)) if ids_all is not None else [], 0, dim=dim)
                bar.update(len(sel))
        finally:
            bar.close()
        outputs, totals = writer.finish()
        stats = [p.statistics for p in ordered]
        statistics = {
            "n_docs": totals["n_docs"],
            "dim": int(dim),
            "skipped_empty": int(sum(s["skipped_empty"] for s in stats)),
            "tokens": int(sum(s["tokens"] for s in stats)),
            "truncated_docs": int(sum(s.get("truncated_docs", 0) for s in stats)),
            "input_rows": int(stats[0]["input_rows"]),
            "parts": totals["parts"],
            "part_rows": totals["part_rows"],
            "merged_partitions": n,
        }
        accounting = {"input_rows": statistics["input_rows"], "documents": statistics["n_docs"],
                      "skipped": {"empty": statistics["skipped_empty"], "empty_rows": _empty_rows(ordered, file_index)},
                      "other_partitions": 0, "complete": True,
                      "limit": None, "partitions": [p.manifest.get("accounting") for p in ordered]}
        manifest = build_manifest("embed", settings, inputs, outputs, statistics, accounting=accounting,
                                  extra={"corpus_stat": first.manifest.get("corpus_stat")})
        run.commit(manifest)
    return StepResult(manifest, out, run.state, time.perf_counter() - t0, int(len(perm)))


def _empty_rows(parts: list[EmbedDir], file_index: dict) -> list:
    """The first empty rows of all partitions together, in input order (each lists its own first ones)."""
    rows = [tuple(r) for p in parts for r in ((p.manifest.get("accounting") or {}).get("skipped") or {})
            .get("empty_rows", [])]
    rows.sort(key=lambda r: (file_index.get(r[0], len(file_index)), r[1]))
    return [list(r) for r in rows[:EMPTY_ROWS_LISTED]]


def _check_accounting(parts: list[EmbedDir]) -> None:
    """Every input row belongs to exactly one partition: the partitions' documents and empty rows sum to it."""
    accts = [p.manifest.get("accounting") or {} for p in parts]
    rows = {a.get("input_rows") for a in accts}
    if len(rows) != 1:
        raise MismatchError(f"{parts[0].path}: the partitions read different numbers of input rows ({sorted(rows)}); "
                            f"the corpus changed between them: rerun every partition")
    total = rows.pop()
    owned = sum(a.get("documents", 0) + a.get("skipped", {}).get("empty", 0) for a in accts)
    docs = sum(p.n_docs for p in parts)
    if owned != total or docs != sum(a.get("documents", 0) for a in accts):
        raise MismatchError(f"{parts[0].path}: the partitions account for {owned} of {total} input rows "
                            f"({docs} documents); a partition is incomplete or from another job: rerun it")
