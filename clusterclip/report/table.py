"""The per-cluster table: size, mean similarity, keywords and example documents.

:func:`cluster_table` is what ``clusterclip clusters`` prints and what the report's table shows.
Its cost is bounded whatever the corpus size: one streaming pass over ``assignments.parquet``
(:mod:`.examples`), then one forward pass over the texts of the picked documents only (a
seeded sample of at most ``sample_docs`` per cluster and ``max_sample_docs`` in all, plus the
examples), counted as they stream (:mod:`.keywords`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import inputs
from .examples import excerpt, select_documents
from .keywords import KeywordCounter

DEFAULT_SAMPLE_DOCS = 200
DEFAULT_MAX_SAMPLE_DOCS = 200_000
DEFAULT_KEYWORDS = 10
DEFAULT_NEAREST = 3
DEFAULT_EDGE = 2
DEFAULT_EXCERPT_CHARS = 200


@dataclass
class Example:
    """One document shown for a cluster."""

    doc_id: int
    similarity: float  # cosine to the cluster's centroid
    user_id: str | None  # the corpus's own id (embed --id-column), when there is one
    source: str  # the corpus file
    row: int  # row (Parquet) or line (JSONL, 0-based) in it
    excerpt: str


@dataclass
class ClusterRow:
    """One cluster of the table. ``keywords``/``nearest``/``edge`` are empty without the embed directory."""

    cluster: int
    size: int
    share: float  # of all documents
    mean_similarity: float | None  # None for an empty cluster
    parent: int | None = None  # second-level group (cluster --levels 2)
    keywords: list[str] = field(default_factory=list)
    keyword_docs: int = 0  # how many sampled documents the keywords come from
    nearest: list[Example] = field(default_factory=list)  # most similar to the centroid first
    edge: list[Example] = field(default_factory=list)  # least similar first
    # with a schedule (``clusters --schedule``): its samples and tokens of the cluster
    samples: int | None = None
    tokens: int | None = None
    token_share: float | None = None  # of the schedule's tokens
    mean_tokens: float | None = None  # mean sample length of the cluster's tokenized documents

    def to_json(self) -> dict:
        out = asdict(self)
        for name in SCHEDULE_FIELDS:
            if out[name] is None:
                del out[name]
        return out


SCHEDULE_FIELDS = ("samples", "tokens", "token_share", "mean_tokens")


@dataclass
class ClusterTable:
    """Rows (by cluster id) plus what they were computed from."""

    rows: list[ClusterRow]
    k: int
    n_docs: int
    embed_dir: str | None  # None: no keywords or examples
    sample_docs_per_cluster: int  # the per-cluster cap actually used (after the total cap)
    sampled_docs: int  # documents read for the keywords, in all
    schedule_dir: str | None = None  # with add_schedule: the schedule whose samples and tokens the rows show
    schedule_samples: int | None = None
    schedule_tokens: int | None = None  # None: that schedule counted no tokens (a dry run without a tokenizer)

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "k": self.k,
            "n_docs": self.n_docs,
            "embed_dir": self.embed_dir,
            "sample_docs_per_cluster": self.sample_docs_per_cluster,
            "sampled_docs": self.sampled_docs,
        }
        if self.schedule_dir is not None:
            out.update(schedule_dir=self.schedule_dir, schedule_samples=self.schedule_samples,
                       schedule_tokens=self.schedule_tokens)
        out["clusters"] = [r.to_json() for r in self.rows]
        return out


def add_schedule(table: ClusterTable, sched: inputs.ScheduleInfo) -> ClusterTable:
    """Fill every row's ``samples`` and, when the schedule counted tokens, ``tokens``, ``token_share`` and
    ``mean_tokens`` from the schedule's manifest (:func:`inputs.read_schedule`)."""
    table.schedule_dir = str(sched.directory)
    table.schedule_samples = sched.samples
    table.schedule_tokens = sched.tokens if sched.has_tokens else None
    for row in table.rows:
        row.samples = int(sched.cluster_samples[row.cluster])
        if sched.cluster_tokens is not None and sched.tokens is not None:  # sched.has_tokens
            row.tokens = int(sched.cluster_tokens[row.cluster])
            row.token_share = row.tokens / sched.tokens if sched.tokens else 0.0
            if sched.cluster_mean_tokens is not None and sched.cluster_mean_tokens[row.cluster] is not None:
                row.mean_tokens = float(sched.cluster_mean_tokens[row.cluster])
    return table


def per_cluster_sample(sizes: np.ndarray, sample_docs: int, max_sample_docs: int) -> int:
    """Documents sampled per cluster: ``sample_docs``, lowered so that K clusters need at most ``max_sample_docs``."""
    nonempty = int(np.count_nonzero(sizes))
    return max(1, min(sample_docs, max_sample_docs // max(nonempty, 1)))


def cluster_table(
    cl_dir: str | Path,
    emb_dir: str | Path | None = None,
    *,
    clusters: Sequence[int] | None = None,
    sample_docs: int = DEFAULT_SAMPLE_DOCS,
    max_sample_docs: int = DEFAULT_MAX_SAMPLE_DOCS,
    n_keywords: int = DEFAULT_KEYWORDS,
    n_nearest: int = DEFAULT_NEAREST,
    n_edge: int = DEFAULT_EDGE,
    excerpt_chars: int = DEFAULT_EXCERPT_CHARS,
    seed: int = 0,
    cluster_info: inputs.ClusterInfo | None = None,
) -> ClusterTable:
    """The table of the clusters in ``cl_dir``; with ``emb_dir``, also keywords and example documents.

    ``clusters``: the cluster ids to return rows (and examples) for, in that order; all by
    default. Keywords do not depend on it: they are always ranked against a sample of every
    cluster (at most ``sample_docs`` documents per cluster, ``max_sample_docs`` in all,
    chosen by ``seed``), so a cluster's keywords are the same in every view of it.
    """
    info = cluster_info or inputs.read_clusters(cl_dir)
    if clusters is None:
        clusters = range(info.k)
    clusters = [int(c) for c in clusters]
    bad = [c for c in clusters if not 0 <= c < info.k]
    if bad:
        from ..errors import InputError

        raise InputError(f"cluster {bad[0]}: no such cluster in {info.directory} (ids are 0..{info.k - 1})")
    n_docs = info.n_docs
    rows = [
        ClusterRow(
            cluster=c,
            size=int(info.size[c]),
            share=float(info.size[c] / n_docs) if n_docs else 0.0,
            mean_similarity=None if math.isnan(info.mean_similarity[c]) else float(info.mean_similarity[c]),
            parent=None if info.parent is None else int(info.parent[c]),
        )
        for c in clusters
    ]
    per_cluster = per_cluster_sample(info.size, sample_docs, max_sample_docs)
    table = ClusterTable(rows=rows, k=info.k, n_docs=n_docs, embed_dir=None,
                         sample_docs_per_cluster=per_cluster, sampled_docs=0)
    if emb_dir is None:
        return table
    emb_dir = inputs.check_embed_matches(emb_dir, info)  # the generation clustered, if EMB grew since
    table.embed_dir = str(emb_dir)

    selection = select_documents(
        inputs.iter_assignments(info.directory), n_clusters=info.k, n_nearest=n_nearest, n_edge=n_edge,
        sample_limit=np.minimum(info.size, per_cluster), example_clusters=np.asarray(clusters, np.int64), seed=seed,
    )
    sample_cluster = _cluster_of(selection.sample)
    example_ids = {d for group in (selection.nearest, selection.edge) for ids in group.values() for d in ids.tolist()}
    wanted = np.union1d(np.fromiter(sample_cluster, np.int64, len(sample_cluster)),
                        np.fromiter(example_ids, np.int64, len(example_ids)))
    counter = KeywordCounter()
    texts: dict[int, str] = {}
    for doc_id, text in inputs.read_texts(emb_dir, wanted):
        if doc_id in sample_cluster:
            counter.add(sample_cluster[doc_id], text)
        if doc_id in example_ids:
            texts[doc_id] = excerpt(text, excerpt_chars)
    keywords = counter.top_terms(n_keywords)
    origins = inputs.read_doc_origins(emb_dir, sorted(texts))

    def examples(doc_ids) -> list[Example]:
        out = []
        for d in doc_ids.tolist():
            origin = origins[d]
            out.append(Example(doc_id=d, similarity=round(selection.similarity[d], 6), user_id=origin.user_id,
                               source=origin.source, row=origin.row, excerpt=texts[d]))
        return out

    for row in rows:
        row.keywords = keywords.get(row.cluster, [])
        row.keyword_docs = len(selection.sample.get(row.cluster, ()))
        row.nearest = examples(selection.nearest.get(row.cluster, np.zeros(0, np.int64)))
        row.edge = examples(selection.edge.get(row.cluster, np.zeros(0, np.int64)))
    table.sampled_docs = len(sample_cluster)
    return table


def _cluster_of(groups: dict[int, np.ndarray]) -> dict[int, int]:
    return {int(d): c for c, ids in groups.items() for d in ids.tolist()}
