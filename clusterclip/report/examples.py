"""Pick, in one streaming pass over the assignments, the documents the report shows and reads.

Per cluster, three sets of documents are kept, each the ``limit`` smallest by a key
(ties broken by the smaller ``doc_id``):

- *nearest*: the most similar to the centroid (key ``-similarity``);
- *edge*: the least similar (key ``similarity``);
- *sample*: a seeded random sample for the keywords (key: a 64-bit hash of ``doc_id`` and the
  seed). Keeping the smallest hashes is a uniform sample without replacement that does not
  depend on how the file is cut into batches, so the same seed gives the same sample.

Memory is bounded by the kept documents (``K × limit`` per set) plus one batch: each batch is
first filtered against every cluster's current worst kept key, then merged and trimmed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def doc_hash(doc_id: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 of ``doc_id`` mixed with ``seed``: a uint64 per document, the same on every machine."""
    with np.errstate(over="ignore"):
        z = doc_id.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


class SmallestPerCluster:
    """The ``limit[c]`` documents of each cluster ``c`` with the smallest keys, fed batch by batch."""

    def __init__(self, limit: np.ndarray, key_dtype):
        self.limit = np.asarray(limit, dtype=np.int64)
        self.key_dtype = np.dtype(key_dtype)
        self.worst = np.full(len(self.limit), self._largest_key(), dtype=self.key_dtype)
        self.cluster: np.ndarray = np.zeros(0, np.int64)
        self.key = np.zeros(0, self.key_dtype)
        self.doc_id: np.ndarray = np.zeros(0, np.int64)

    def _largest_key(self):
        return np.iinfo(self.key_dtype).max if self.key_dtype.kind == "u" else np.inf

    def offer(self, cluster: np.ndarray, key: np.ndarray, doc_id: np.ndarray) -> None:
        """Consider a batch; keep what beats (or ties) each cluster's current worst kept key."""
        keep = (self.limit[cluster] > 0) & (key <= self.worst[cluster])
        if not keep.any():
            return
        cluster = np.concatenate([self.cluster, cluster[keep]])
        key = np.concatenate([self.key, key[keep].astype(self.key_dtype, copy=False)])
        doc_id = np.concatenate([self.doc_id, doc_id[keep]])
        order = np.lexsort((doc_id, key, cluster))
        cluster, key, doc_id = cluster[order], key[order], doc_id[order]
        first = np.r_[0, np.flatnonzero(np.diff(cluster)) + 1]
        rank = np.arange(len(cluster)) - np.repeat(first, np.diff(np.r_[first, len(cluster)]))
        kept = rank < self.limit[cluster]
        self.cluster, self.key, self.doc_id = cluster[kept], key[kept], doc_id[kept]
        # clusters holding their full quota: later documents must beat their worst kept key
        full = rank == self.limit[cluster] - 1
        self.worst[cluster[full]] = key[full]

    def groups(self) -> dict[int, np.ndarray]:
        """``cluster -> doc_ids`` in key order (best first)."""
        if not len(self.cluster):
            return {}
        first = np.r_[0, np.flatnonzero(np.diff(self.cluster)) + 1]
        parts = np.split(self.doc_id, first[1:])
        return {int(self.cluster[f]): p for f, p in zip(first, parts)}


@dataclass
class Selection:
    """What one pass over the assignments picked, per cluster (doc ids in display order)."""

    nearest: dict[int, np.ndarray]
    edge: dict[int, np.ndarray]
    sample: dict[int, np.ndarray]
    similarity: dict[int, float]  # doc_id -> cosine to its centroid, for the nearest and edge documents


def select_documents(
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    n_clusters: int,
    n_nearest: int,
    n_edge: int,
    sample_limit: np.ndarray,
    example_clusters: np.ndarray | None = None,
    seed: int = 0,
) -> Selection:
    """One pass over ``(doc_id, cluster, similarity)`` batches (any order of rows).

    ``sample_limit[c]``: how many documents of cluster ``c`` to sample for keywords.
    ``example_clusters``: the clusters whose nearest/edge documents are wanted (all by default).
    """
    show = np.ones(n_clusters, bool) if example_clusters is None else np.isin(np.arange(n_clusters), example_clusters)
    nearest = SmallestPerCluster(np.where(show, n_nearest, 0), np.float64)
    edge = SmallestPerCluster(np.where(show, n_edge, 0), np.float64)
    sample = SmallestPerCluster(sample_limit, np.uint64)
    similarity: dict[int, float] = {}
    for doc_id, cluster, sim in batches:
        sim64: np.ndarray = sim.astype(np.float64)
        nearest.offer(cluster, -sim64, doc_id)
        edge.offer(cluster, sim64, doc_id)
        sample.offer(cluster, doc_hash(doc_id, seed), doc_id)
    for pool, sign in ((nearest, -1.0), (edge, 1.0)):
        similarity.update({int(d): float(sign * k) for d, k in zip(pool.doc_id, pool.key)})
    near = nearest.groups()
    # a cluster of fewer than n_nearest + n_edge documents: its edge shows only documents not already nearest
    edges = {c: ids[~np.isin(ids, near.get(c, ()))] for c, ids in edge.groups().items()}
    return Selection(nearest=near, edge={c: ids for c, ids in edges.items() if len(ids)},
                     sample=sample.groups(), similarity=similarity)


def excerpt(text: str, max_chars: int) -> str:
    """The start of ``text`` with whitespace runs collapsed, cut at a word boundary, ``…`` when cut."""
    flat = " ".join(text.split())
    if len(flat) <= max_chars:
        return flat
    head = flat[: max_chars + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    if len(cut) < max_chars // 2 or len(cut) > max_chars:  # one very long word
        cut = flat[:max_chars]
    return cut.rstrip(" ,;:.") + " …"
