"""Everything the report reads from the artifact directories, in one place.

The report only reads: the ``embed`` directory (manifest, ``docs.parquet``, texts through
:func:`read_texts`), the ``cluster`` directory (manifest, ``clusters.parquet``,
``centroids.npy``, ``assignments.parquet`` in batches) and optionally a ``schedule``
directory (manifest, ``order.parquet`` in batches). Nothing here holds a per-document
array of the whole corpus: large files are streamed in batches of :data:`BATCH_ROWS` rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import manifest_digest
from ..artifacts.manifest import Manifest, changed_upstream, unchanged_upstream
from ..cluster.directory import ClusterDir, ClusterStats
from ..embed.directory import EmbedDir
from ..errors import InputError, MismatchError
from ..schedule.directory import ScheduleDir, ScheduleStats, iter_order_file  # noqa: F401 - the tests' way to a bare file

BATCH_ROWS = 1 << 20


@dataclass(frozen=True)
class ClusterInfo:
    """``clusters.parquet`` and ``centroids.npy`` of a ``cluster`` directory, indexed by cluster id."""

    directory: Path
    manifest: Manifest
    stats: ClusterStats
    size: np.ndarray  # int64 [K]
    mean_similarity: np.ndarray  # float64 [K], NaN for empty clusters
    parent: np.ndarray | None  # int64 [K] with --levels 2
    centroids: np.ndarray  # float32 [K, D]

    @property
    def k(self) -> int:
        return int(self.size.shape[0])

    @property
    def n_docs(self) -> int:
        return int(self.size.sum())

    @property
    def overall_mean_similarity(self) -> float:
        """Mean cosine of every document to its centroid (manifest ``statistics.mean_similarity``)."""
        value = self.stats.mean_similarity
        return float("nan") if value is None else float(value)

    @property
    def embed_record(self) -> dict:
        """The embed directory the cluster manifest names (``inputs.embed``: path, manifest digest)."""
        return self.manifest.upstream("embed")

    @property
    def recorded_embed_path(self) -> str | None:
        """The embed directory the cluster manifest names (``inputs.embed.path``), whether or not it still exists."""
        return self.embed_record.get("path")


def read_clusters(cl_dir: str | Path) -> ClusterInfo:
    """Read a finished ``cluster`` directory's per-cluster tables (K rows, never N), through its owner."""
    cl = ClusterDir(cl_dir)
    size, mean_similarity, parent = cl.cluster_columns()
    return ClusterInfo(Path(cl_dir), cl.info, cl.stats, size, mean_similarity, parent,
                       cl.centroids().astype(np.float32, copy=False))


@dataclass(frozen=True)
class EmbedInfo:
    """What the report uses from an ``embed`` directory's manifest."""

    directory: Path
    model: str | None
    id_column: str | None  # the user's own id column in docs.parquet (embed --id-column)
    encoder: str = "hf"  # embed --encoder: hf, sentence-transformers, model2vec (static)


def read_embed(emb_dir: str | Path) -> EmbedInfo:
    settings = EmbedDir(emb_dir).settings
    return EmbedInfo(Path(emb_dir), settings.get("model"), settings.get("id_column"), settings.get("backend", "hf"))


def check_embed_matches(emb_dir: str | Path, clusters: ClusterInfo) -> Path:
    """The directory to read ``clusters``' documents from: ``emb_dir`` when they were clustered from it as it
    is, or the generation of it that ``embed --incremental`` kept when it grew ``emb_dir`` since; else raise."""
    emb = EmbedDir(emb_dir)  # a clear error when it is not an embed directory
    recorded = clusters.embed_record
    if recorded.get("manifest_sha256") == manifest_digest(emb_dir):
        return Path(emb_dir)
    kept = emb.as_recorded(recorded)
    if kept is not emb:
        return kept.path
    raise MismatchError(
        f"{clusters.directory}: {changed_upstream(recorded, emb_dir, 'clustered')}; "
        "give the embed directory it was made from"
    )


def recorded_embed_dir(clusters: ClusterInfo) -> Path | None:
    """The ``embed`` directory a ``cluster`` directory was made from, if it is still there unchanged.

    The cluster manifest records its path (``inputs.embed.path``) and manifest digest; the
    directory counts only when both still match, so a moved or re-run embed is not used silently.
    """
    return unchanged_upstream(clusters.embed_record)


@dataclass(frozen=True)
class ScheduleInfo:
    """What the report uses from a ``schedule`` directory's manifest (its statistics, SPEC §1.3)."""

    directory: Path
    sampler: str
    max_repeats: int | None  # the clip; None unless the sampler is clusterclip
    alpha: float
    samples: int
    n_bins: int  # parts of the balance over time
    cluster_samples: list[int]
    clusters_exhausted: int | None
    balance_shares: list[list[float]] | None  # [bins][K], recorded when K <= 100
    # in tokens (recorded when the schedule counted tokens: a tokenizer and not a plain dry run)
    balance: str = "samples"  # --balance
    tokens: int | None = None
    cluster_tokens: list[int] | None = None  # tokens of each cluster's samples
    cluster_mean_tokens: list | None = None  # mean sample length per cluster (None: no document tokenized)
    balance_tokens: dict | None = None  # as the balance, of the tokens of each tenth ("shares" when K <= 100)
    cluster_token_budget: list[int] | None = None  # --budget-tokens, split per cluster
    cluster_dedup_removed: list[int] | None = None  # --dedup-threshold
    # the schedule's own law: per-cluster weight multipliers (--weights) and clips (per cluster)
    multipliers: np.ndarray | None = None
    cluster_max_repeats: np.ndarray | None = None
    law_missing: str | None = None  # why the law could not be rebuilt (its --weights file moved or changed)
    budget: dict | None = None  # what was asked and what was got (statistics.budget: schedule.target)

    @property
    def has_tokens(self) -> bool:
        return self.cluster_tokens is not None and self.tokens is not None

    @property
    def extended(self) -> bool:
        """The schedule used --balance tokens, --weights, per-cluster clips, --budget-tokens or dedup."""
        return (self.balance != "samples" or self.multipliers is not None or self.cluster_max_repeats is not None
                or self.cluster_token_budget is not None or self.cluster_dedup_removed is not None
                or self.law_missing is not None)


def read_schedule(sched_dir: str | Path, clusters: ClusterInfo) -> ScheduleInfo:
    """Read a ``schedule`` directory's manifest and check that it was planned from ``clusters``."""
    sched = ScheduleDir(sched_dir)
    recorded = sched.info.upstream("cluster")
    if recorded.get("manifest_sha256") != manifest_digest(clusters.directory):
        raise MismatchError(
            f"{sched_dir}: {changed_upstream(recorded, clusters.directory, 'scheduled')}; "
            "give the cluster directory it was made from"
        )
    try:
        return _schedule_info(sched, clusters.k)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{Path(sched_dir) / 'manifest.json'}: lacks the schedule statistics ({e}); "
                         "rerun `clusterclip schedule --overwrite`") from None


def _schedule_info(sched: ScheduleDir, k: int) -> ScheduleInfo:
    """The :class:`ScheduleInfo` of a schedule of ``k`` clusters (its settings, statistics and law)."""
    settings, stats = sched.settings, sched.stats
    sampler = settings["sampler"]
    if stats.balance is None or stats.cluster_samples is None:
        raise KeyError("balance" if stats.balance is None else "cluster_samples")
    cluster_tokens = stats.cluster_tokens
    if cluster_tokens is not None and len(cluster_tokens) != k:
        raise ValueError(f"cluster_tokens has {len(cluster_tokens)} entries for k={k}")
    law = sched.law()
    multipliers, repeats, missing = _schedule_law(settings, k) if law is None else _recorded_law(law, settings, k)
    return ScheduleInfo(
        directory=sched.path, sampler=sampler,
        max_repeats=int(settings["max_repeats"]) if sampler == "clusterclip" else None,
        alpha=float(settings.get("alpha") or 0.0), samples=int(stats.samples), n_bins=int(stats.balance["bins"]),
        cluster_samples=list(stats.cluster_samples), clusters_exhausted=stats.clusters_exhausted,
        balance_shares=stats.balance.get("shares"),
        balance=settings.get("balance") or "samples",
        tokens=None if stats.tokens is None else int(stats.tokens),
        cluster_tokens=None if cluster_tokens is None else [int(t) for t in cluster_tokens],
        cluster_mean_tokens=stats.cluster_mean_tokens,
        balance_tokens=stats.balance_tokens,
        cluster_token_budget=stats.cluster_token_budget,
        cluster_dedup_removed=stats.cluster_dedup_removed,
        multipliers=multipliers, cluster_max_repeats=repeats, law_missing=missing, budget=stats.budget,
    )


def _recorded_law(law: dict, settings: dict, k: int) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """The multipliers and clips of ``law.parquet`` (what the schedule drew with, whatever became of its
    ``--weights`` file); a schedule of several stages has one law per stage, not one to draw."""
    stages = np.unique(law["stage"])
    if len(stages) != 1:
        return None, None, f"it changes law over {len(stages)} stages (law.parquet holds each stage's expected shares)"
    multiplier = np.asarray(law["multiplier"], np.float64)[:k]
    clip = np.asarray(law["clip"], np.int64)[:k]
    multipliers = multiplier if np.any(multiplier != 1) else None
    base = settings.get("max_repeats")
    repeats = clip if base is not None and np.any(clip != int(base)) else None
    return multipliers, repeats, None


def _schedule_law(settings: dict, k: int) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """The per-cluster weight multipliers and clips a schedule drew with: its ``--weights`` file (used
    only while its sha256 is still the recorded ``weights_digest``) and ``--cluster-max-repeats``.
    Returns ``(multipliers or None, clips or None, why the file could not be used or None)``."""
    from ..schedule.mixing import file_digest, parse_cluster_repeats, read_cluster_table

    multipliers = repeats = missing = None
    path = settings.get("weights")
    if path is not None:
        try:
            same = Path(path).is_file() and file_digest(path) == settings.get("weights_digest")
        except OSError:
            same = False
        if same:
            multipliers, file_repeats = read_cluster_table(path, k)
            repeats = file_repeats if np.any(file_repeats) else None
        else:
            missing = f"its --weights file {path} is missing or has changed since"
    if settings.get("cluster_max_repeats"):
        repeats = parse_cluster_repeats(settings["cluster_max_repeats"], k, repeats)
    if repeats is not None and settings.get("max_repeats") is not None:
        repeats = np.where(repeats > 0, repeats, int(settings["max_repeats"]))
    return multipliers, repeats, missing


def iter_assignments(cl_dir: str | Path, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream ``assignments.parquet`` as ``(doc_id int64, cluster int64, similarity float32)`` batches."""
    return ClusterDir(cl_dir).iter_assignments(batch_rows)


def iter_order(sched_dir: str | Path, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream a schedule's ``order.parquet`` (its digest checked) as ``(position, cluster, repeat)`` int64 batches."""
    return ScheduleDir(sched_dir).iter_order(batch_rows)


@dataclass(frozen=True)
class DocOrigin:
    """Where a document comes from: the user's id (when ``embed --id-column`` named one), file and row."""

    user_id: str | None
    source: str
    row: int


def read_doc_origins(emb_dir: str | Path, doc_ids) -> dict[int, DocOrigin]:
    """``doc_id -> DocOrigin`` for a few documents, reading only the row groups of ``docs.parquet`` that hold them."""
    emb = EmbedDir(emb_dir)
    id_column = emb.id_column
    rows = emb.docs_rows(doc_ids, ["source", "row"] + ([id_column] if id_column else []))
    out: dict[int, DocOrigin] = {}
    for doc_id, row in rows.items():
        user_id = row.get(id_column) if id_column else None
        out[doc_id] = DocOrigin(None if user_id is None else str(user_id), row["source"], int(row["row"]))
    return out


def read_texts(emb_dir: str | Path, doc_ids) -> Iterator[tuple[int, str]]:
    """Stream ``(doc_id, text)`` for ascending ``doc_ids``: the report's only way to the texts."""
    return EmbedDir(emb_dir).texts(doc_ids)
