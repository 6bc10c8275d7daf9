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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..artifacts import StepResult
from ..errors import InputError, MismatchError
from ..progress import bar as progress_bar
from ..readers.base import EMPTY_ROWS_LISTED
from ..settings import Settings
from ..steps import Outcome, Plan, Run, Step, run_step
from .directory import EmbedDir, EmbedStats
from .writer import EmbedWriter, common_id_type

#: settings every partition of one job must share (the rest, e.g. device or batch size, may differ)
SHARED_SETTINGS = ("text_column", "id_column", "backend", "model", "max_length", "long_docs", "prompt_name",
                   "pooling", "normalize", "save_dtype", "num_partitions", "partition_block", "window_docs",
                   "part_docs", "limit")


@dataclass(frozen=True)
class MergeSettings(Settings):
    """``merge`` has no settings of its own: what it writes follows from the partitions."""

    step = "merge"


class MergeStep(Step[MergeSettings]):
    """The partitions of one ``embed --num-partitions N`` job -> the directory a one-shot run writes."""

    name = "merge"
    artifact = "embed"
    settings_class = MergeSettings
    resumable = False  # merging is fast: a killed merge starts again

    def __init__(self, parts: Sequence[EmbedDir], settings: MergeSettings | None = None, **kwargs):
        super().__init__(settings or MergeSettings(), **kwargs)
        self.parts = list(parts)
        self.ordered: list[EmbedDir] = []

    @classmethod
    def open(cls, part_dirs: Sequence, **kwargs) -> MergeStep:
        if not part_dirs:
            raise InputError("merge: give the embed directories of all partitions")
        return cls([EmbedDir(d) for d in part_dirs], **kwargs)

    def plan(self, out: Path, overwrite: bool) -> Plan:
        self.ordered = _in_partition_order(self.parts)
        _check_accounting(self.ordered)
        first = self.parts[0]
        settings = dict(self.ordered[0].settings)
        settings.update(num_partitions=1, partition_index=0)
        inputs = {"files": first.corpus_files, "partitions": [p.record() for p in self.ordered]}
        return Plan(settings, inputs, reads=tuple(p.path for p in self.parts))

    def run(self, run: Run) -> Outcome:
        import pyarrow as pa

        ordered, settings = self.ordered, run.plan.settings
        for p in ordered:  # every byte read is checked against what the partition recorded
            p.verify()
        docs = _Documents(ordered, settings.get("id_column"))
        perm = docs.input_order()
        writer = EmbedWriter(run.build, id_column=docs.id_column, save_dtype=settings["save_dtype"])
        writer.resume()  # merging is fast: a killed merge starts again (resume drops nothing valid)
        writer.journal.clear()
        part_docs = int(settings["part_docs"])
        shard_of = np.asarray(np.searchsorted(docs.offsets, perm, side="right")) - 1
        bar = progress_bar(len(perm), desc="merge", unit="doc", unit_scale=True, enabled=self.progress)
        try:
            for k, start in enumerate(range(0, len(perm), part_docs)):
                sel = perm[start : start + part_docs]
                block = docs.embeddings(sel, shard_of[start : start + part_docs])
                writer.write_part(k, block, pa.array([docs.sources[i] for i in docs.keys_file[sel]], type=pa.string()),
                                  docs.keys_row[sel], docs.n_chars[sel], np.zeros(len(sel), dtype=np.int64),
                                  docs.ids.take(pa.array(sel)) if docs.ids is not None else [], 0, dim=docs.dim)
                bar.update(len(sel))
        finally:
            bar.close()
        outputs, totals = writer.finish()
        statistics = _statistics(ordered, totals, docs.dim)
        file_index = {r["path"]: i for i, r in enumerate(self.parts[0].corpus_files)}
        accounting = {"input_rows": statistics.input_rows, "documents": statistics.n_docs,
                      "skipped": {"empty": statistics.skipped_empty, "empty_rows": _empty_rows(ordered, file_index)},
                      "other_partitions": 0, "complete": True,
                      "limit": None, "partitions": [p.info.accounting for p in ordered]}
        return Outcome(outputs, statistics, accounting=accounting,
                       extra={"corpus_stat": self.parts[0].info.extra.get("corpus_stat")}, processed=int(len(perm)))

    def summary(self, result) -> str:
        st = result.statistics
        return (f"merge: {st['n_docs']:,} docs from {st['merged_partitions']} partitions, dim {st['dim']}, "
                f"{st['skipped_empty']:,} empty skipped, every one of {st['input_rows']:,} input rows accounted for, "
                f"in {result.seconds:.1f} s -> {result.out}")

    def done_line(self, result) -> str:
        return f"merge: {result.out} is already done with these partitions (nothing to do)"


STEP = MergeStep


def merge_embeddings(part_dirs: Sequence, out_dir, *, overwrite: bool = False, progress: bool = True,
                     log: Callable[[str], None] | None = None) -> StepResult:
    """Merge the ``embed`` directories of all partitions of one job into ``out_dir``."""
    return run_step(MergeStep.open(part_dirs, progress=progress, log=log), out_dir, overwrite=overwrite)


def _in_partition_order(parts: list[EmbedDir]) -> list[EmbedDir]:
    """The partitions of one job, checked (same settings and corpus, complete, each once, none missing), by index."""
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
    return [by_index[i] for i in range(n)]


class _Documents:
    """The documents of all partitions, concatenated in partition order, and how to put them in input order."""

    def __init__(self, ordered: list[EmbedDir], id_column: str | None):
        import pyarrow as pa

        self.ordered, self.id_column = ordered, id_column
        corpus = ordered[0].corpus_files
        file_index = {r["path"]: i for i, r in enumerate(corpus)}
        self.sources = [r["path"] for r in corpus]
        keys_file, keys_row, tables = [], [], []
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
        self.stores = [p.store() for p in ordered]
        dims = {s.dim for s, t in zip(self.stores, tables) if t.num_rows}
        if len(dims) > 1:
            raise MismatchError(f"partitions disagree on the embedding dimension ({sorted(dims)}); rerun them with one "
                                f"model")
        self.dim = dims.pop() if dims else self.stores[0].dim
        self.keys_file, self.keys_row = np.concatenate(keys_file), np.concatenate(keys_row)
        self.offsets = np.cumsum([0] + [t.num_rows for t in tables])
        self.n_chars = np.concatenate([t.column("n_chars").to_numpy() for t in tables])
        self.ids = None
        if id_column is not None:
            id_type = common_id_type([t.schema.field(id_column).type for t in tables])
            self.ids = pa.chunked_array([t.column(id_column).cast(id_type) for t in tables], type=id_type
                                        ).combine_chunks()

    def input_order(self) -> np.ndarray:
        """The permutation into input order (file, then row); refuses no documents and a row given twice."""
        kf, kr = self.keys_file, self.keys_row
        perm = np.lexsort((kr, kf))
        if len(perm) == 0:
            raise InputError(f"{self.ordered[0].path}: the partitions hold no documents (all empty?); check the "
                             f"inputs and --text-column")
        if len(perm) > 1:
            sf, sr = kf[perm], kr[perm]
            dup = np.nonzero((sf[1:] == sf[:-1]) & (sr[1:] == sr[:-1]))[0]
            if len(dup):
                raise MismatchError(f"{self.sources[sf[dup[0]]]}, row {sr[dup[0]]}: embedded by two partitions; merge "
                                    f"only the partitions of one job")
        return perm

    def embeddings(self, sel: np.ndarray, shard_of: np.ndarray) -> np.ndarray:
        """The embeddings of documents ``sel`` (positions in partition order), each from its partition."""
        block: np.ndarray = np.empty((len(sel), self.dim), dtype=np.float32)
        for s in np.unique(shard_of):
            m = np.nonzero(shard_of == s)[0]
            block[m] = self.stores[s].take(sel[m] - self.offsets[s])
        return block


def _statistics(ordered: list[EmbedDir], totals: dict, dim: int) -> EmbedStats:
    stats = [p.stats for p in ordered]
    return EmbedStats(
        n_docs=totals["n_docs"],
        dim=int(dim),
        skipped_empty=int(sum(s.skipped_empty or 0 for s in stats)),
        tokens=int(sum(s.tokens or 0 for s in stats)),
        truncated_docs=int(sum(s.truncated_docs or 0 for s in stats)),
        input_rows=int(stats[0].input_rows or 0),
        parts=totals["parts"],
        part_rows=totals["part_rows"],
        merged_partitions=len(ordered),
    )


def _empty_rows(parts: list[EmbedDir], file_index: dict) -> list:
    """The first empty rows of all partitions together, in input order (each lists its own first ones)."""
    rows = [tuple(r) for p in parts for r in ((p.info.accounting or {}).get("skipped") or {}).get("empty_rows", [])]
    rows.sort(key=lambda r: (file_index.get(r[0], len(file_index)), r[1]))
    return [list(r) for r in rows[:EMPTY_ROWS_LISTED]]


def _check_accounting(parts: list[EmbedDir]) -> None:
    """Every input row belongs to exactly one partition: the partitions' documents and empty rows sum to it."""
    infos = [p.info for p in parts]
    rows = {m.counted("input_rows", -1) for m in infos}  # -1: not recorded (never equal to a count)
    if len(rows) != 1:
        raise MismatchError(f"{parts[0].path}: the partitions read different numbers of input rows ({sorted(rows)}); "
                            f"the corpus changed between them: rerun every partition")
    total = rows.pop()
    owned = sum(m.counted("documents") + int((m.accounting or {}).get("skipped", {}).get("empty", 0)) for m in infos)
    docs = sum(p.n_docs for p in parts)
    if owned != total or docs != sum(m.counted("documents") for m in infos):
        raise MismatchError(f"{parts[0].path}: the partitions account for {owned} of {total} input rows "
                            f"({docs} documents); a partition is incomplete or from another job: rerun it")
