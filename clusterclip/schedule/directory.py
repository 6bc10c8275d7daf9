"""The owner of a ``schedule`` directory: its layout and reading it back.

Layout (SPEC §2, §3)::

    order.parquet       position int64, doc_id int64, cluster int32, repeat int32: the training order; when the
                        schedule counted tokens also tokens (int32, int64 past 2**31): the sample's tokens,
                        delimiters included (as in the shards), so positions in tokens are a cumulative sum
                        (and stage int32 when the schedule has several stages, a continued one included)
    law.parquet         the resolved sampling law, one row per stage and cluster (:data:`.law.LAW_COLUMNS`)
    shards.json         every shard of every format: files (bytes, sha256), tokens, samples, first position
    bin/ megatron/ ...  the shards, one sub-directory per format (see :mod:`clusterclip.shards`)
    manifest.json       settings, inputs, every output file with its sha256, statistics, accounting
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..artifacts import write_parquet_atomic
from ..artifacts.directory import ArtifactDir, open_parquet
from ..artifacts.manifest import MANIFEST, Stats, read_stats, written
from ..errors import InputError, IntegrityError
from ..shards.index import INDEX_FILE, read_index

ORDER_FILE = "order.parquet"
LAW_FILE = "law.parquet"
WORK_DIR = ".work"  # scratch space of a running schedule inside its build (token store)


def write_order(path: Path, schedule, sample_tokens: np.ndarray | None = None) -> None:
    """``order.parquet``: one row per sample (position, doc_id, cluster, repeat, and with ``sample_tokens``, the
    tokens of each sample: ``tokens``; stage when the schedule has several), atomically."""
    import pyarrow as pa

    columns = {
        "position": pa.array(np.arange(len(schedule), dtype=np.int64)),
        "doc_id": pa.array(schedule.doc_id.astype(np.int64, copy=False)),
        "cluster": pa.array(schedule.cluster.astype(np.int32, copy=False)),
        "repeat": pa.array(schedule.repeat.astype(np.int32, copy=False)),
    }
    if sample_tokens is not None:
        if len(sample_tokens) != len(schedule):
            raise ValueError(f"{len(sample_tokens)} sample lengths for {len(schedule)} samples")
        wide = len(sample_tokens) and int(sample_tokens.max()) >= 2**31
        columns["tokens"] = pa.array(sample_tokens.astype(np.int64 if wide else np.int32, copy=False))
    if schedule.staged:
        columns["stage"] = pa.array(schedule.stage)
    write_parquet_atomic(path, pa.table(columns), row_group_size=1 << 20)


def write_law(path: Path, table: dict[str, np.ndarray]) -> None:
    """``law.parquet``: the columns of :func:`.law.law_table`, atomically."""
    import pyarrow as pa

    from .law import LAW_COLUMNS

    write_parquet_atomic(path, pa.table({name: pa.array(table[name]) for name in LAW_COLUMNS}))


def iter_order_file(path: Path, batch_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An ``order.parquet`` file as ``(position, cluster, repeat)`` int64 batches."""
    pf = open_parquet(Path(path), "schedule")
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["position", "cluster", "repeat"]):
        yield (batch.column(0).to_numpy().astype(np.int64, copy=False),
               batch.column(1).to_numpy().astype(np.int64, copy=False),
               batch.column(2).to_numpy().astype(np.int64, copy=False))


@dataclass(frozen=True)
class ScheduleStats(Stats):
    """A schedule manifest's ``statistics`` (SPEC §1.3; built by :func:`.stats.schedule_statistics` and the
    schedule step), read through :attr:`ScheduleDir.stats` (see :class:`~clusterclip.artifacts.manifest.Stats`
    for the versions: the fields with a default are absent from 0.2.0's outputs or from some configurations)."""

    samples: int
    unique_docs_used: int | None = written()
    docs_never_used: int | None = written()
    cluster_samples: list[int] | None = written()  #: samples drawn from each cluster
    max_repeat_count: int | None = written()
    mean_repeat_count: float | None = written()
    exhausted: bool | None = written()  #: the pool ran out before the budget
    clusters_exhausted: int | None = written()  #: clusters whose every document was used up to the clip (None: unknown)
    balance: dict | None = written()  #: the balance over time: bins, clusters drawn per bin, shares (K <= 100)
    warnings: list[str] | None = None
    # in tokens: when the schedule counted them (a tokenizer, not a plain dry run)
    tokens: int | None = None
    cluster_tokens: list[int] | None = None  #: tokens of each cluster's samples
    balance_tokens: dict | None = None  #: as ``balance``, of the tokens
    cluster_mean_tokens: list[float | None] | None = None  #: mean sample length per cluster (None: none tokenized)
    cluster_token_budget: list[int] | None = None  #: ``--budget-tokens`` split per cluster
    cluster_dedup_removed: list[int] | None = None  #: ``--dedup-threshold``: documents left out per cluster
    budget: dict | None = None  #: what was asked and what was got
    excluded_docs: int | None = None  #: ``--exclude``: held-out documents never drawn
    stages: list[dict] | None = None  #: per stage, when the schedule has several

    def what(self, settings: dict) -> str:
        return f"{self.samples} samples" + (", a dry run: order only, no shards" if settings.get("dry_run") else "")


class ScheduleDir(ArtifactDir):
    """A finished ``schedule`` directory, checked on opening (manifest, file sizes)."""

    step = "schedule"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.stats = read_stats(ScheduleStats, self.manifest, self.path / MANIFEST)
        self.n_samples = int(self.stats.samples)

    @property
    def dry_run(self) -> bool:
        return bool(self.settings.get("dry_run"))

    def order_file(self) -> Path:
        self.verify_file(ORDER_FILE)
        return self.path / ORDER_FILE

    def iter_order(self, batch_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``order.parquet`` (digest checked) as ``(position, cluster, repeat)`` int64 batches."""
        return iter_order_file(self.order_file(), batch_rows)

    def order_columns(self) -> list[str]:
        """The columns ``order.parquet`` holds (``tokens`` when the schedule counted them, ``stage`` with stages):
        its schema only (sized at opening; the data is read, digest checked, by :meth:`iter_order_columns`)."""
        return list(open_parquet(self.path / ORDER_FILE, "schedule").schema_arrow.names)

    def iter_order_columns(self, columns: list[str], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
        """``order.parquet`` (digest checked) as batches of the named columns, each an int64 array."""
        pf = open_parquet(self.order_file(), "schedule")
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise InputError(f"{self.path / ORDER_FILE}: has no column {missing[0]!r}; rerun `clusterclip schedule "
                             f"--overwrite` with this version")
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            yield {c: batch.column(i).to_numpy().astype(np.int64, copy=False) for i, c in enumerate(columns)}

    def order_row(self, position: int) -> dict:
        """``doc_id``, ``cluster`` and ``repeat`` at ``position`` (one row group read)."""
        import pyarrow.parquet as pq

        path = self.order_file()
        pf = pq.ParquetFile(path)
        n = pf.metadata.num_rows
        if n != self.n_samples:
            raise IntegrityError(f"{path}: {n} rows but the manifest records {self.n_samples} samples")
        if not 0 <= position < n:
            raise InputError(f"--sample {position}: out of range; {path} has positions 0..{n - 1}")
        start = 0
        for g in range(pf.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if position < start + rows:
                t = pf.read_row_group(g, columns=["doc_id", "cluster", "repeat"])
                i = position - start
                return {c: int(t.column(c)[i].as_py()) for c in ("doc_id", "cluster", "repeat")}
            start += rows
        raise InputError(f"--sample {position}: not found in {path}")  # pragma: no cover

    def read_sample(self, fmt: str, position: int, index: dict | None = None) -> np.ndarray:
        """Tokens of the sample at ``position`` read back from ``fmt``'s shard files, after checking the sha256 of
        every file it is read from against the manifest (a damaged shard is refused, never shown)."""
        from ..shards import find_shards, read_sample

        index = index or self.shards_index()
        self.verify({f["path"] for rec in find_shards(index, fmt, position) for f in rec["files"]})
        return read_sample(self.path, fmt, position, index)

    def shards_index(self) -> dict:
        if self.dry_run:
            raise InputError(f"{self.path}: a dry run (order only, no shards); rerun `clusterclip schedule` without "
                             f"--dry-run to write shards")
        self.verify_file(INDEX_FILE)
        return read_index(self.path)

    def law(self) -> dict[str, np.ndarray] | None:
        """``law.parquet`` (digest checked) as columns; None for a schedule written before it existed."""
        if not any(r["path"] == LAW_FILE for r in self.info.outputs):
            return None
        table = self.parquet(LAW_FILE).read()
        return {name: table.column(name).to_numpy() for name in table.column_names}

    def order_head(self, n: int) -> dict[str, np.ndarray]:
        """The first ``n`` rows of ``order.parquet`` (digest checked): doc_id, cluster, repeat and stage (0
        throughout when the order has no stage column)."""
        pf = self.parquet(ORDER_FILE)
        names = ["doc_id", "cluster", "repeat"] + (["stage"] if "stage" in pf.schema_arrow.names else [])
        parts: dict[str, list] = {c: [] for c in names}
        got = 0
        for batch in pf.iter_batches(batch_size=1 << 20, columns=names):
            if got >= n:
                break
            take = min(n - got, batch.num_rows)
            for c in names:
                parts[c].append(batch.column(c).to_numpy()[:take])
            got += take
        out = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in parts.items()}
        if "stage" not in out:
            out["stage"] = np.zeros(len(out["doc_id"]), np.int32)
        return out

    def order_rows(self) -> int:
        """Rows of ``order.parquet`` (its digest checked)."""
        return self.parquet(ORDER_FILE).metadata.num_rows
