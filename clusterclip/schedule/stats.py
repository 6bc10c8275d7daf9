"""Statistics every schedule reports (SPEC §1.3), as plain JSON-serialisable values.

Balance over time: the schedule is cut into ``n_bins`` contiguous parts of (nearly) equal length
(tenths by default). For every part the statistics hold the number of clusters drawn in it, the
largest and the smallest share among those drawn, and the normalised entropy of the shares
(``H / log(n_clusters)``: 1 when all clusters are drawn equally, 0 when one cluster takes all).
With at most :data:`MAX_LISTED_CLUSTERS` clusters they also hold every cluster's share per part;
beyond that the summary alone keeps the manifest small.
"""

from __future__ import annotations

import numpy as np

from .sampling import Schedule

MAX_LISTED_CLUSTERS = 100


def schedule_statistics(
    schedule: Schedule,
    n_docs: int,
    n_clusters: int,
    lengths=None,
    n_bins: int = 10,
    *,
    labels=None,
    max_repeats: int | None = None,
) -> dict:
    """Summarise a schedule.

    Parameters
    ----------
    schedule : Schedule
        The planned order.
    n_docs, n_clusters : int
        Corpus size and number of clusters (ids ``0..n_clusters-1``).
    lengths : array_like of int, optional
        Tokens per document (one sample of it); adds ``tokens``.
    n_bins : int
        Parts of the schedule for the balance over time (tenths by default).
    labels : array_like of int, optional
        Cluster of every document; with ``max_repeats`` it lets ``clusters_exhausted`` be counted.
    max_repeats : int, optional
        The clip of a ``clusterclip`` schedule.

    Returns
    -------
    dict
        ``samples``, ``tokens`` (with ``lengths``), ``unique_docs_used``, ``docs_never_used``,
        ``cluster_samples`` (list of ``n_clusters`` counts), ``max_repeat_count`` and
        ``mean_repeat_count`` (times used, over the used documents), ``exhausted``,
        ``clusters_exhausted`` (clusters whose every document was used ``max_repeats`` times;
        all non-empty clusters when the pool is exhausted; None when it cannot be known without
        ``labels`` and ``max_repeats``) and ``balance`` (see the module docstring).
    """
    doc_id = np.asarray(schedule.doc_id)
    cluster = np.asarray(schedule.cluster)
    uses = np.bincount(doc_id, minlength=n_docs)
    used = uses > 0
    n_used = int(used.sum())
    cluster_samples = np.bincount(cluster, minlength=n_clusters)
    stats: dict = {"samples": len(schedule)}
    if lengths is not None:
        stats["tokens"] = int(np.asarray(lengths, np.int64)[doc_id].sum())
    stats.update(
        unique_docs_used=n_used,
        docs_never_used=int(n_docs - n_used),
        cluster_samples=cluster_samples.tolist(),
        max_repeat_count=int(uses.max()) if n_used else 0,
        mean_repeat_count=float(uses[used].mean()) if n_used else 0.0,
        exhausted=bool(schedule.exhausted),
        clusters_exhausted=_clusters_exhausted(schedule, uses, n_clusters, labels, max_repeats),
        balance=_balance(cluster, n_clusters, n_bins),
    )
    return stats


def _clusters_exhausted(schedule, uses, n_clusters, labels, max_repeats) -> int | None:
    if labels is not None and max_repeats is not None:
        labels = np.asarray(labels)
        short = np.bincount(labels[uses < max_repeats], minlength=n_clusters)
        return int(np.sum((np.bincount(labels, minlength=n_clusters) > 0) & (short == 0)))
    if schedule.exhausted:
        return int(np.count_nonzero(np.bincount(np.asarray(schedule.cluster), minlength=n_clusters)))
    return None


def _balance(cluster: np.ndarray, n_clusters: int, n_bins: int) -> dict:
    edges = [len(cluster) * i // n_bins for i in range(n_bins + 1)]
    balance: dict = {"bins": n_bins, "bin_edges": edges, "active_clusters": [], "max_share": [],
                     "min_share": [], "entropy": []}
    if n_clusters <= MAX_LISTED_CLUSTERS:
        balance["shares"] = []
    for start, stop in zip(edges[:-1], edges[1:]):
        counts = np.bincount(cluster[start:stop], minlength=n_clusters)
        share = counts / max(stop - start, 1)
        drawn = share[counts > 0]
        if n_clusters > 1:
            entropy = max(0.0, float(-(drawn * np.log(drawn)).sum() / np.log(n_clusters)))
        else:
            entropy = float(len(drawn) > 0)
        balance["active_clusters"].append(int(len(drawn)))
        balance["max_share"].append(float(drawn.max()) if len(drawn) else 0.0)
        balance["min_share"].append(float(drawn.min()) if len(drawn) else 0.0)
        balance["entropy"].append(round(entropy, 6))
        if "shares" in balance:
            balance["shares"].append([round(float(x), 6) for x in share])
    return balance


def format_statistics(stats: dict) -> str:
    """A few lines of human summary of :func:`schedule_statistics`' result."""
    tokens = f" ({stats['tokens']:,} tokens)" if "tokens" in stats else ""
    used = stats["unique_docs_used"]
    total = used + stats["docs_never_used"]
    counts = np.asarray(stats["cluster_samples"])
    drawn = counts[counts > 0]
    lines = [
        f"{stats['samples']:,} samples{tokens} from {used:,} of {total:,} documents "
        f"({stats['docs_never_used']:,} never used)",
        f"uses per used document: max {stats['max_repeat_count']}, "
        f"mean {stats['mean_repeat_count']:.2f}",
    ]
    if len(drawn):
        lines.append(
            f"samples per cluster: {len(drawn):,} of {len(counts):,} clusters drawn, "
            f"min {drawn.min():,}, median {int(np.median(drawn)):,}, max {drawn.max():,}"
        )
    exhausted = stats.get("clusters_exhausted")
    if exhausted is not None:
        lines.append(f"clusters that left the pool (clip reached): {exhausted:,}")
    if stats["exhausted"]:
        lines.append("the clip emptied the pool: every document was used max_repeats times")
    entropy = " ".join(f"{e:.2f}" for e in stats["balance"]["entropy"])
    lines.append(f"balance per part (normalised entropy, 1 = all clusters equal): {entropy}")
    return "\n".join(lines)
