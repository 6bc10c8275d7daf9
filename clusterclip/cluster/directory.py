"""The owner of a ``cluster`` directory: its layout, writing it, reading it back.

Layout (SPEC §2)::

    centroids.npy          float32 [K, D], unit norm
    assignments.parquet    doc_id int64 (ascending, one row per document), cluster int32, similarity float32
    clusters.parquet       cluster int32, size int64, mean_similarity float32 (null when empty)
                           [, parent int32, parent_similarity float32 with levels=2]
    centroids-level2.npy   with levels=2
    manifest.json

Clusters left without documents are kept (size 0), so cluster ids are the rows of ``centroids.npy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..artifacts import file_record, save_npy_atomic, write_parquet_atomic
from ..artifacts.directory import ArtifactDir
from ..artifacts.journal import Journal, files_intact
from ..artifacts.manifest import MANIFEST, Stats, changed_upstream, read_stats, written
from ..embed.directory import after_incremental
from ..errors import IntegrityError, MismatchError

TRAIN_STATE = "train-state.jsonl"
CENTROIDS = "centroids.npy"
ASSIGNMENTS = "assignments.parquet"
CLUSTERS = "clusters.parquet"
CENTROIDS_L2 = "centroids-level2.npy"


@dataclass(frozen=True)
class ClusterStats(Stats):
    """A cluster manifest's ``statistics``: written by the cluster step, read through :attr:`ClusterDir.stats`
    (see :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    n_docs: int
    k: int
    dim: int | None = written()
    mean_similarity: float | None = written()  #: mean cosine of every document to its centroid
    objective: float | None = written()  #: the sum of those cosines
    train_points: int | None = written()  #: documents k-means trained on
    train_objective: float | None = written()  #: k-means' last objective on them (None: not trained)
    init_points: int | None = written()
    train_mean_similarity: float | None = written()
    iterations: int | None = written()
    empty_cluster_splits: int | None = written()
    empty_clusters: int | None = written()
    empty_cluster_ids: list[int] | None = written()
    empty_clusters_policy: str | None = written()
    sizes: dict | None = written()  #: size statistics (min, median, max, gini, ...)
    threads: int | None = written()
    level2: dict | None = None  #: ``--levels 2``: k, clusters_per_parent, docs_per_parent, mean_centroid_similarity
    assign_only: dict | None = None  #: ``--assign-only``: where the centroids come from, how well they fit

    def what(self, settings: dict) -> str:
        return f"{self.n_docs} documents in {self.k} clusters"


class ClusterDir(ArtifactDir):
    """A finished ``cluster`` directory, checked on opening (manifest, file sizes)."""

    step = "cluster"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.stats = read_stats(ClusterStats, self.manifest, self.path / MANIFEST)
        self.k = int(self.stats.k)
        self.n_docs = int(self.stats.n_docs)

    @property
    def embed_record(self) -> dict:
        """The record of the embed directory these clusters were computed from (path, manifest digest)."""
        return self.info.upstream("embed")

    def check_belongs_to(self, emb) -> None:
        """Refuse an embed directory these clusters were not computed from."""
        recorded = self.embed_record
        if recorded.get("manifest_sha256") != emb.record()["manifest_sha256"] and emb.grew_from(
                recorded.get("manifest_sha256")):
            raise MismatchError(f"{self.path}: clusters the {self.n_docs:,} documents {emb.path} held before "
                                f"`embed --incremental` ({emb.n_docs:,} now); {after_incremental(emb.path, self.path)}")
        if recorded.get("manifest_sha256") != emb.record()["manifest_sha256"]:
            raise MismatchError(
                f"{self.path}: {changed_upstream(recorded, emb.path, 'clustered')}; "
                f"rerun `clusterclip cluster {emb.path} --out {self.path} --overwrite`")
        if self.n_docs != emb.n_docs:
            raise MismatchError(f"{self.path}: holds {self.n_docs} documents but {emb.path} {emb.n_docs}; "
                                f"rerun `clusterclip cluster`")

    def labels(self) -> np.ndarray:
        """The cluster of every document (int64 ``[N]``), its digest and shape checked."""
        import pyarrow.parquet as pq

        self.verify_file(ASSIGNMENTS)
        path = self.path / ASSIGNMENTS
        table = pq.read_table(path, columns=["doc_id", "cluster"])
        doc_id = table.column("doc_id").to_numpy()
        if len(doc_id) != self.n_docs or not np.array_equal(doc_id, np.arange(self.n_docs)):
            raise IntegrityError(f"{path}: doc_id must be 0..{self.n_docs - 1} in order; rerun `clusterclip cluster`")
        labels = table.column("cluster").to_numpy().astype(np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.k):
            raise IntegrityError(f"{path}: cluster ids outside 0..{self.k - 1}; rerun `clusterclip cluster`")
        return labels

    def iter_assignments(self, batch_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``assignments.parquet`` (digest checked) as ``(doc_id int64, cluster int64, similarity float32)`` batches."""
        pf = self.parquet(ASSIGNMENTS)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["doc_id", "cluster", "similarity"]):
            yield (batch.column(0).to_numpy().astype(np.int64, copy=False),
                   batch.column(1).to_numpy().astype(np.int64, copy=False),
                   batch.column(2).to_numpy().astype(np.float32, copy=False))

    def centroids(self) -> np.ndarray:
        """``centroids.npy`` (``[K, D]``), its digest and shape checked."""
        self.verify_file(CENTROIDS)
        c = np.load(self.path / CENTROIDS, allow_pickle=False)
        if c.ndim != 2 or c.shape[0] != self.k:
            raise IntegrityError(f"{self.path / CENTROIDS}: expected shape [{self.k}, dim], got {list(c.shape)}; "
                                 f"rerun `clusterclip cluster --overwrite`")
        return c

    def cluster_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``size`` int64, ``mean_similarity`` float64 (NaN for empty clusters) and, with ``--levels 2``,
        ``parent`` int64 of clusters ``0..K-1`` from ``clusters.parquet`` (digest, columns and ids checked)."""
        path = self.path / CLUSTERS
        table = self.clusters_table()
        for column in ("cluster", "size", "mean_similarity"):
            if column not in table.column_names:
                raise IntegrityError(f"{path}: has no `{column}` column; rerun `clusterclip cluster --overwrite`")
        ids = table.column("cluster").to_numpy()
        if len(ids) != self.k or not np.array_equal(ids, np.arange(self.k)):
            raise IntegrityError(f"{path}: expected clusters 0..{self.k - 1} in order (manifest.json says "
                                 f"k={self.k}); rerun `clusterclip cluster --overwrite`")
        size = table.column("size").to_numpy().astype(np.int64)
        mean_similarity = table.column("mean_similarity").to_numpy(zero_copy_only=False).astype(np.float64)
        parent = table.column("parent").to_numpy().astype(np.int64) if "parent" in table.column_names else None
        return size, mean_similarity, parent

    def level2_centroids(self) -> np.ndarray:
        """``centroids-level2.npy`` (``--levels 2``), its digest checked."""
        self.verify_file(CENTROIDS_L2)
        return np.load(self.path / CENTROIDS_L2, allow_pickle=False)

    def clusters_table(self):
        import pyarrow.parquet as pq

        self.verify_file(CLUSTERS)
        return pq.read_table(self.path / CLUSTERS)


def save_train_state(build: Path, centroids: np.ndarray, info: dict) -> None:
    """The centroids a run trained, kept in its build so an interrupted run does not train again."""
    save_npy_atomic(build / CENTROIDS, centroids)
    Journal(build / TRAIN_STATE).rewrite([{"centroids": file_record(build, CENTROIDS), **info}])


def load_train_state(build: Path) -> dict | None:
    """The centroids (``"centroids"``) and training statistics an interrupted run of the same job saved,
    when the centroids still re-hash to what was journaled; else None."""
    state = Journal(build / TRAIN_STATE).last()
    if not state or not isinstance(state.get("centroids"), dict) or not files_intact(build, [state["centroids"]]):
        return None
    try:
        state["centroids"] = np.load(build / CENTROIDS, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return state


def write_outputs(build: Path, centroids: np.ndarray, labels: np.ndarray, similarity: np.ndarray,
                  level2: dict | None = None) -> list[str]:
    """Write every output file of a cluster directory into ``build``; return their names."""
    import pyarrow as pa

    k = len(centroids)
    n = len(labels)
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    sim_sum = np.bincount(labels, weights=similarity.astype(np.float64), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_sim = (sim_sum / sizes).astype(np.float32)
    save_npy_atomic(build / CENTROIDS, centroids)
    write_parquet_atomic(build / ASSIGNMENTS, pa.table({
        "doc_id": pa.array(np.arange(n, dtype=np.int64)),
        "cluster": pa.array(labels),
        "similarity": pa.array(similarity),
    }), row_group_size=1 << 20)
    columns = {
        "cluster": pa.array(np.arange(k, dtype=np.int32)),
        "size": pa.array(sizes),
        "mean_similarity": pa.array(mean_sim, mask=sizes == 0),
    }
    names = [CENTROIDS, ASSIGNMENTS, CLUSTERS]
    if level2 is not None:
        columns["parent"] = pa.array(level2["parent"])
        columns["parent_similarity"] = pa.array(level2["similarity"])
        save_npy_atomic(build / CENTROIDS_L2, level2["centroids"])
        names.append(CENTROIDS_L2)
    write_parquet_atomic(build / CLUSTERS, pa.table(columns))
    return names


def gini(sizes: np.ndarray) -> float:
    """Gini coefficient of the cluster sizes (0 = all equal, -> 1 = one cluster holds all)."""
    s = np.sort(np.asarray(sizes, dtype=np.float64))
    n, total = len(s), s.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2.0 * np.sum(np.arange(1, n + 1) * s) / (n * total)) - (n + 1) / n)


def size_statistics(sizes: np.ndarray) -> dict:
    sizes = np.asarray(sizes, dtype=np.int64)
    mean = float(sizes.mean())
    return {
        "min": int(sizes.min()),
        "median": float(np.median(sizes)),
        "mean": round(mean, 6),
        "max": int(sizes.max()),
        "cv": round(float(sizes.std() / mean), 6) if mean > 0 else 0.0,
        "gini": round(gini(sizes), 6),
    }
